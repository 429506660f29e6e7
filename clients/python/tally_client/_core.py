"""The client's rules, without I/O or threads: ids, event serialization, batch bodies, what an answer means, the
wait before a retry, and the outbox's bookkeeping. The sync and asyncio clients wrap it with their own lock and
transport; the TypeScript client (clients/typescript/src/delivery.ts, outbox.ts) follows the same rules."""

import gzip
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple, Union

from ._errors import BufferFull, EventProblem, Rejection

JSON_MAX_EVENTS = 10_000
RETRIED_STATUSES = {408, 425, 429}

_last_ms = -1
_counter = 0
_uuid_lock = threading.Lock()


def uuid7(now_ms: Optional[int] = None) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix ms, a 12-bit counter keeping ids of one ms in order, 62 random bits.

    Ids made by one process are strictly increasing, also when the clock steps back (the same algorithm as the
    TypeScript client's).
    """
    r = os.urandom(10)
    with _uuid_lock:
        return _uuid7(int(time.time() * 1000) if now_ms is None else now_ms, r)


def _uuid7(now: int, r: bytes) -> str:
    global _last_ms, _counter
    if now > _last_ms:
        _last_ms = now
        # A random start below 2^11 leaves at least 2,048 ids for this millisecond.
        _counter = (r[0] << 3) | (r[1] & 0x07)
    else:
        _counter += 1
        if _counter > 0xFFF:
            _last_ms += 1
            _counter = 0
    b = bytearray(16)
    b[0:6] = _last_ms.to_bytes(6, "big")
    b[6] = 0x70 | (_counter >> 8)
    b[7] = _counter & 0xFF
    b[8] = 0x80 | (r[2] & 0x3F)
    b[9:16] = r[3:10]
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_event(
    customer: str,
    meter: str,
    value: Union[int, float, str, None],
    timestamp: Union[str, datetime, None],
    id: Optional[str],
    properties: Optional[Mapping[str, str]],
) -> Dict[str, Any]:
    """The event as sent: id and timestamp (the time of use, not of delivery) filled in when absent."""
    event: Dict[str, Any] = {"id": id if id is not None else uuid7(), "customer": customer, "meter": meter}
    if value is not None:
        event["value"] = value
    if timestamp is None:
        event["timestamp"] = iso_now()
    elif isinstance(timestamp, datetime):
        ts = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=timezone.utc)
        event["timestamp"] = ts.isoformat()
    else:
        event["timestamp"] = timestamp
    if properties is not None:
        event["properties"] = dict(properties)
    return event


def serialize(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def encode_batch(lines: List[str], size: int, gzip_above_bytes: int) -> Tuple[bytes, Dict[str, str]]:
    """JSON up to gzip_above_bytes (and 10,000 events), gzip NDJSON above."""
    if size <= gzip_above_bytes and len(lines) <= JSON_MAX_EVENTS:
        body = ('{"events":[' + ",".join(lines) + "]}").encode("utf-8")
        return body, {"Content-Type": "application/json"}
    body = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1)
    return body, {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, at - (time.time() if now is None else now))


def retry_delay(
    attempt: int, retry_after: Optional[float], base: float, maximum: float, random: Callable[[], float]
) -> float:
    """Exponential backoff with full jitter, never less than Retry-After (plus up to 10%)."""
    backoff = max(0.001, random() * min(maximum, base * 2.0 ** min(attempt - 1, 30)))
    if retry_after is None:
        return backoff
    return max(backoff, retry_after + random() * retry_after * 0.1)


@dataclass
class Outcome:
    """delivered | retry | refused-some | too-large | refused-all (see classify)."""

    kind: str
    status: int = 0
    code: str = ""
    detail: str = ""
    duplicates: int = 0
    retry_after: Optional[float] = None
    refused: Dict[int, List[EventProblem]] = field(default_factory=dict)


def _problem(text: str) -> Optional[Dict[str, Any]]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def classify(status: int, text: str, retry_after: Optional[str], count: int) -> Outcome:
    """What Tally's answer to a batch of `count` events means for it."""
    if 200 <= status < 300:
        body = _problem(text) or {}
        return Outcome("delivered", status, duplicates=int(body.get("duplicates", 0)))
    problem = _problem(text) or {}
    code = str(problem.get("code") or f"http_{status}")
    detail = str(problem.get("detail") or text[:300])
    if status >= 500 or status in RETRIED_STATUSES:
        return Outcome("retry", status, code, f"{status} {code}: {detail}", retry_after=parse_retry_after(retry_after))
    if status == 413:
        return Outcome("too-large", status, code, detail)
    errors = problem.get("errors")
    if status in (400, 422) and isinstance(errors, list) and errors:
        refused: Dict[int, List[EventProblem]] = {}
        for e in errors:
            index = e.get("index") if isinstance(e, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
                return Outcome("refused-all", status, code, detail)
            refused.setdefault(index, []).append(EventProblem(str(e.get("field", "")), str(e.get("message", ""))))
        return Outcome("refused-some", status, code, detail, refused=refused)
    return Outcome("refused-all", status, code, detail)


@dataclass
class Item:
    seq: int
    line: str
    at: float


@dataclass
class Barrier:
    seq: int
    remaining: int
    signal: Any  # set() when its events have left: a threading.Event or an asyncio.Event


@dataclass
class Step:
    """What to do after an answer: the batch left to send, how long to wait first, what to report."""

    batch: List[Item]
    delay: Optional[float]
    rejections: List[Rejection]
    retry_reason: Optional[str] = None


class Outbox:
    """The buffer's bookkeeping (callers hold a lock around every call); the same as the TypeScript outbox."""

    def __init__(self, max_batch_events: int, max_batch_bytes: int, flush_interval: float, max_buffered: int) -> None:
        self.max_events = max_batch_events
        self.max_bytes = max_batch_bytes
        self.interval = flush_interval
        self.max_buffered = max_buffered
        self.queue: Deque[Item] = deque()
        self.queue_bytes = 0
        self.seq = 0
        self.force_upto = -1
        self.in_flight: List[List[Item]] = []
        self.barriers: List[Barrier] = []
        self.abandoned = False
        # Counts flush() calls: a batch retried across one starts its backoff again from retry_base.
        self.flushes = 0
        self.metrics = {"sent": 0, "duplicates": 0, "retried": 0, "rejected": 0, "buffered": 0, "batches": 0}

    def full(self) -> bool:
        return self.metrics["buffered"] >= self.max_buffered

    def add(self, line: str, now: float) -> bool:
        """Buffers a line; True when the sender should wake (the first line waiting, or a batch is due)."""
        self.metrics["buffered"] += 1
        self.queue.append(Item(self.seq, line, now))
        self.seq += 1
        self.queue_bytes += len(line) + 1
        return len(self.queue) == 1 or self.due(now)

    def full_error(self) -> BufferFull:
        """What track() raises on a full buffer when told not to wait (on_buffer_full="error")."""
        return BufferFull(
            f"Tally client buffer full: {self.metrics['buffered']} events not yet acknowledged "
            f"(max_buffered_events {self.max_buffered})"
        )

    def barrier(self, signal: Any) -> bool:
        """A barrier on everything buffered now; False when nothing is (no need to wait)."""
        held = self.metrics["buffered"]
        if held == 0:
            return False
        self.barriers.append(Barrier(self.seq - 1, held, signal))
        self.flushes += 1
        self.force_upto = max(self.force_upto, self.seq - 1)
        return True

    def due(self, now: float) -> bool:
        if not self.queue or self.abandoned:
            return False
        first = self.queue[0]
        return (
            first.seq <= self.force_upto
            or len(self.queue) >= self.max_events
            or self.queue_bytes >= self.max_bytes
            or now - first.at >= self.interval
        )

    def wait_time(self, now: float) -> Optional[float]:
        """Seconds until the oldest event is due by age; None with nothing queued."""
        if not self.queue:
            return None
        return max(0.0, self.queue[0].at + self.interval - now)

    def take(self) -> List[Item]:
        batch: List[Item] = []
        size = 0
        while self.queue and len(batch) < self.max_events:
            n = len(self.queue[0].line) + 1
            if batch and size + n > self.max_bytes:
                break
            size += n
            batch.append(self.queue.popleft())
        self.queue_bytes -= size
        self.in_flight.append(batch)
        return batch

    def body(self, batch: List[Item]) -> Tuple[List[str], int]:
        lines = [i.line for i in batch]
        return lines, sum(len(line) + 1 for line in lines)

    def finished(self, batch: List[Item]) -> None:
        """A sender is done with `batch` (empty unless abandoned: then it stays listed in pending())."""
        if not batch:
            self.in_flight = [b for b in self.in_flight if b is not batch]

    def pending(self) -> List[Dict[str, Any]]:
        items = [i for b in self.in_flight for i in b] + list(self.queue)
        return [json.loads(i.line) for i in sorted(items, key=lambda i: i.seq)]

    def attempt(self, attempt: int, flushes: int) -> Tuple[int, int]:
        """The attempt number of a retry (from 1 again after a flush), and the flushes it counts from."""
        if flushes != self.flushes:
            return 1, self.flushes
        return attempt + 1, flushes

    def after(self, batch: List[Item], outcome: Outcome, attempt: int, delay: Any) -> Step:
        """Applies an answer to `batch` (changed in place); `delay(attempt, retry_after)` gives retry waits."""
        m = self.metrics
        if outcome.kind == "delivered":
            m["sent"] += len(batch)
            m["duplicates"] += outcome.duplicates
            m["batches"] += 1
            self.settle(batch)
            batch.clear()
            return Step(batch, None, [])
        if outcome.kind == "refused-some":
            refused = [(item, outcome.refused[i]) for i, item in enumerate(batch) if i in outcome.refused]
            kept = [item for i, item in enumerate(batch) if i not in outcome.refused]
            rejections = self._refuse(refused, outcome)
            m["retried"] += len(kept)
            batch[:] = kept
            return Step(batch, None, rejections)
        if outcome.kind == "too-large" and len(batch) > 1:
            half = (len(batch) + 1) // 2
            rest = batch[half:]
            del batch[half:]
            self.max_events = min(self.max_events, half)
            self.queue.extendleft(reversed(rest))
            self.queue_bytes += sum(len(i.line) + 1 for i in rest)
            self.force_upto = max(self.force_upto, rest[-1].seq)
            m["retried"] += len(batch)
            return Step(batch, None, [])
        if outcome.kind in ("too-large", "refused-all"):
            problems = [EventProblem("", outcome.detail)]
            rejections = self._refuse([(item, problems) for item in batch], outcome)
            batch.clear()
            return Step(batch, None, rejections)
        return Step(batch, delay(attempt, outcome.retry_after), [], outcome.detail)

    def retried(self, batch: List[Item]) -> None:
        if not self.abandoned:
            self.metrics["retried"] += len(batch)

    def _refuse(self, refused: List[Tuple[Item, List[EventProblem]]], outcome: Outcome) -> List[Rejection]:
        if not refused:
            return []
        self.metrics["rejected"] += len(refused)
        self.settle([item for item, _ in refused])
        return [Rejection(json.loads(item.line), outcome.status, outcome.code, problems) for item, problems in refused]

    def settle(self, items: List[Item]) -> None:
        self.metrics["buffered"] -= len(items)
        for barrier in list(self.barriers):
            barrier.remaining -= sum(1 for i in items if i.seq <= barrier.seq)
            if barrier.remaining <= 0:
                self.barriers.remove(barrier)
                barrier.signal.set()
