"""What the client reports: refused events (with Tally's reasons), events not delivered by a deadline, a full
buffer, a closed client, and failed reads."""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class EventProblem:
    field: str
    message: str


@dataclass(frozen=True)
class Rejection:
    """An event Tally refused: removed from the buffer; the rest of its batch was sent again."""

    event: Dict[str, Any]
    status: int
    code: str
    problems: List[EventProblem]


class DeliveryError(Exception):
    """flush()/close() reached their deadline with events Tally has not acknowledged.

    `undelivered` lists them. Some may have been stored (an answer lost in flight): sending them again later, with
    these ids, is safe - Tally counts each (customer, id) once.
    """

    def __init__(self, message: str, undelivered: List[Dict[str, Any]]) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class BufferFull(Exception):
    """track() with on_buffer_full="error" when max_buffered_events are held."""


class ClientClosed(Exception):
    """track() after close()."""


class TallyApiError(Exception):
    """A read Tally answered with an error (status 0: no answer)."""

    def __init__(self, message: str, status: int, problem: Optional[Dict[str, Any]]) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
