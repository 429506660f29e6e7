"""Tally: the synchronous client. track() buffers (blocking only when the buffer is full), sender threads post
batches in the background with retries, flush()/close() deliver what is buffered by a deadline."""

import atexit
import random
import sys
import threading
import time
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Union, cast

from . import _reads as reads
from ._core import Item, Outbox, encode_batch, make_event, retry_delay, serialize
from ._errors import ClientClosed, DeliveryError
from ._http import post_batch
from ._options import Options


class Tally:
    """Sends usage events to Tally, batched and retried; each (customer, id) is stored exactly once.

    >>> tally = Tally(url="http://localhost:3000", api_key="...")
    >>> tally.track(customer="acme", meter="api_calls")
    >>> tally.close()
    """

    def __init__(self, url: str, api_key: str, **options: Any) -> None:
        self._o = Options(url=url, api_key=api_key, **options)
        o = self._o
        self._box = Outbox(o.max_batch_events, o.max_batch_bytes, o.flush_interval, o.max_buffered_events)
        self._lock = threading.Condition()
        self._closed = False
        self._stopped = False
        self._gave_up = threading.Event()
        # Set (and replaced) by flush(): retry waits in progress end early, but not before their Retry-After.
        self._hurry = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"tally-sender-{i}", daemon=True) for i in range(o.concurrency)
        ]
        for w in self._workers:
            w.start()
        # Events buffered when the interpreter exits are delivered (by flush_timeout), not lost with the daemon threads.
        atexit.register(self._at_exit)

    def track(
        self,
        customer: str,
        meter: str,
        value: Union[int, float, str, None] = None,
        timestamp: Union[str, datetime, None] = None,
        id: Optional[str] = None,
        properties: Optional[Mapping[str, str]] = None,
    ) -> str:
        """Buffers one event and returns its id. Blocks while the buffer is full (on_buffer_full="wait"), or raises
        BufferFull ("error"). Returning does not mean Tally has it: flush() says that."""
        with self._lock:
            if self._closed:
                raise ClientClosed("track() after close(): the event was not buffered")
            event = make_event(customer, meter, value, timestamp, id, properties)
            line = serialize(event)
            while self._box.full():
                if self._o.on_buffer_full == "error":
                    raise self._box.full_error()
                self._lock.wait()
                if self._closed:
                    raise ClientClosed("close() while track() waited for room: the event was not buffered")
            now = time.monotonic()
            if self._box.add(line, now):
                self._lock.notify_all()
            return str(event["id"])

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything buffered now; returns when Tally acknowledged (or refused) all of it. Past `timeout`
        (default flush_timeout) raises DeliveryError listing what is still held; delivery goes on."""
        timeout = self._o.flush_timeout if timeout is None else timeout
        done = threading.Event()
        with self._lock:
            if not self._box.barrier(done):
                return
            self._hurry.set()
            self._hurry = threading.Event()
            self._lock.notify_all()
        if not done.wait(timeout):
            with self._lock:
                pending = self._box.pending()
            raise DeliveryError(
                f"flush(): {len(pending)} events not acknowledged by Tally within {timeout} s (still retrying)", pending
            )

    def close(self, timeout: Optional[float] = None) -> None:
        """Stops taking events and delivers everything buffered. Past `timeout` (default flush_timeout) stops
        retrying and raises DeliveryError whose `undelivered` are the events Tally has not acknowledged - the only
        way events leave this client without an acknowledgement or a refusal. Call it on shutdown."""
        timeout = self._o.flush_timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        atexit.unregister(self._at_exit)
        try:
            self.flush(timeout)
        except DeliveryError:
            with self._lock:
                self._box.abandoned = True
                self._gave_up.set()
                self._hurry.set()
                self._lock.notify_all()
                pending = self._box.pending()
            raise DeliveryError(
                f"close(): {len(pending)} events not acknowledged by Tally within {timeout} s; they are in "
                ".undelivered (sending them again with their ids is safe)",
                pending,
            ) from None
        finally:
            with self._lock:
                self._stopped = True
                self._lock.notify_all()

    def metrics(self) -> Dict[str, int]:
        """sent, duplicates, retried, rejected, batches since the start, and buffered now."""
        with self._lock:
            return dict(self._box.metrics)

    def __enter__(self) -> "Tally":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _at_exit(self) -> None:
        try:
            self.close()
        except DeliveryError as err:
            print(f"tally_client: {err}", file=sys.stderr)

    def _work(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._box.abandoned or self._stopped:
                        return
                    now = time.monotonic()
                    if self._box.due(now):
                        batch = self._box.take()
                        break
                    self._lock.wait(self._box.wait_time(now))
            self._deliver(batch)

    def _deliver(self, batch: List[Item]) -> None:
        o = self._o
        attempt = 0
        flushes = self._box.flushes
        while batch:
            with self._lock:
                if self._box.abandoned:
                    return
                lines, size = self._box.body(batch)
            body, headers = encode_batch(lines, size, o.gzip_above_bytes)
            outcome = post_batch(o.url, o.api_key, body, headers, len(batch), o.request_timeout)
            with self._lock:
                if self._box.abandoned:
                    return
                if outcome.kind == "retry":
                    attempt, flushes = self._box.attempt(attempt, flushes)
                step = self._box.after(batch, outcome, attempt, self._delay)
                hurry = self._hurry
                self._lock.notify_all()
            if step.rejections and o.on_rejected:
                try:
                    o.on_rejected(step.rejections)
                except Exception:  # a failing callback must not stop the other events
                    pass
            if step.delay is not None:
                if o.on_retry:
                    o.on_retry(step.retry_reason or "", len(batch), attempt, step.delay)
                started = time.monotonic()
                if hurry.wait(step.delay):
                    floor = min(step.delay, outcome.retry_after or 0.0)
                    self._gave_up.wait(max(0.0, started + floor - time.monotonic()))
                with self._lock:
                    self._box.retried(batch)
        with self._lock:
            self._box.finished(batch)

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        return retry_delay(attempt, retry_after, self._o.retry_base, self._o.retry_max, random.random)

    # Reads: each one GET, answered as parsed JSON; a non-2xx answer raises TallyApiError.

    def _read(self, read: "reads.Read") -> Any:
        return reads.run(self._o.url, self._o.api_key, self._o.request_timeout, read)

    def usage(self, customer: str, meter: str, granularity: str, from_: str, to: str, **kw: Any) -> "reads.UsageSeries":
        """Usage per hour, day or month; group_by=[...], filters={dimension: value or [values]}."""
        return cast("reads.UsageSeries", self._read(reads.usage(customer, meter, granularity, from_, to, **kw)))

    def summary(self, customer: str, period: Optional[str] = None) -> Dict[str, Any]:
        return cast("Dict[str, Any]", self._read(reads.summary(customer, period)))

    def invoice_preview(self, customer: str, period: Optional[str] = None) -> Dict[str, Any]:
        return cast("Dict[str, Any]", self._read(reads.invoice_preview(customer, period)))

    def invoices(
        self,
        customer: Optional[str] = None,
        status: Optional[str] = None,
        period: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        return cast(List[Dict[str, Any]], self._read(reads.invoices(customer, status, period, limit)))

    def invoice(self, id: str) -> Dict[str, Any]:
        return cast("Dict[str, Any]", self._read(reads.invoice(id)))

    def credits(self, customer: str) -> Dict[str, Any]:
        return cast("Dict[str, Any]", self._read(reads.credits(customer)))

    def entitlement(self, customer: str, meter: str) -> "reads.Entitlement":
        """allowed true, or (a block, 429) allowed false with Tally's problem and retry_after_seconds."""
        return cast("reads.Entitlement", self._read(reads.entitlement(customer, meter)))

    def receipt(self, customer: str, id: str) -> Optional["reads.EventReceipt"]:
        """Was this event counted? The stored event, or None."""
        return cast(Optional["reads.EventReceipt"], self._read(reads.receipt(customer, id)))
