"""The options both clients take (the TypeScript client's, in seconds instead of milliseconds)."""

import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from ._errors import Rejection


def _log_rejections(rejections: List[Rejection]) -> None:
    for r in rejections:
        why = "; ".join(f"{p.field}: {p.message}" for p in r.problems)
        print(
            f"Tally refused event {r.event.get('id')} of {r.event.get('customer')} ({r.status} {r.code}): {why}",
            file=sys.stderr,
        )


@dataclass
class Options:
    url: str
    api_key: str
    max_batch_events: int = 1000
    """A batch is sent when it holds this many events..."""
    max_batch_bytes: int = 1024 * 1024
    """...or this many bytes of serialized events..."""
    flush_interval: float = 1.0
    """...or when its oldest event has waited this many seconds."""
    gzip_above_bytes: int = 256 * 1024
    """Larger batches go as gzip-compressed NDJSON."""
    max_buffered_events: int = 100_000
    """Events held (waiting or in flight) before track() blocks or raises."""
    on_buffer_full: str = "wait"
    """"wait" (track blocks until there is room) or "error" (track raises BufferFull)."""
    concurrency: int = 2
    """Requests in flight at once."""
    request_timeout: float = 30.0
    retry_base: float = 0.2
    retry_max: float = 30.0
    flush_timeout: float = 20.0
    """The default deadline of flush() and close()."""
    on_rejected: Optional[Callable[[List[Rejection]], Any]] = None
    """Events Tally refused (never stored). Default: printed to stderr."""
    on_retry: Optional[Callable[[str, int, int, float], Any]] = None
    """(reason, events, attempt, delay) of a failed attempt that will be retried."""

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        for name in ("max_batch_events", "max_batch_bytes", "max_buffered_events", "concurrency"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"Tally option {name} must be a positive integer (got {getattr(self, name)!r})")
        for name in ("flush_interval", "gzip_above_bytes", "request_timeout", "retry_base", "retry_max", "flush_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"Tally option {name} must not be negative (got {getattr(self, name)!r})")
        if self.on_buffer_full not in ("wait", "error"):
            raise ValueError(f'Tally option on_buffer_full must be "wait" or "error" (got {self.on_buffer_full!r})')
        if self.on_rejected is None:
            self.on_rejected = _log_rejections
