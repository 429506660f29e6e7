"""AsyncTally: the asyncio client. The same outbox as the sync client, driven by tasks on the running loop (no lock
needed: the outbox's calls never await); requests run in worker threads (asyncio.to_thread) with http.client."""

import asyncio
import random
import time
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Union, cast

from . import _reads as reads
from ._core import Item, Outbox, Outcome, encode_batch, make_event, retry_delay, serialize
from ._errors import ClientClosed, DeliveryError
from ._http import post_batch
from ._options import Options


class AsyncTally:
    """The asyncio twin of Tally: `await track(...)`, `await flush()`, `await close()`.

    >>> async with AsyncTally(url="http://localhost:3000", api_key="...") as tally:
    ...     await tally.track(customer="acme", meter="api_calls")
    """

    def __init__(self, url: str, api_key: str, **options: Any) -> None:
        self._o = Options(url=url, api_key=api_key, **options)
        o = self._o
        self._box = Outbox(o.max_batch_events, o.max_batch_bytes, o.flush_interval, o.max_buffered_events)
        self._closed = False
        self._stopped = False
        # Created on first use, inside the loop that runs this client (asyncio objects belong to one loop).
        self._workers: List["asyncio.Task[None]"] = []
        self._wake: Optional[asyncio.Event] = None
        self._room: Optional[asyncio.Event] = None
        self._gave_up: Optional[asyncio.Event] = None
        # Set (and replaced) by flush(): retry waits in progress end early, but not before their Retry-After.
        self._hurry: Optional[asyncio.Event] = None

    def _start(self) -> None:
        if self._workers:
            return
        self._wake, self._room, self._gave_up = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._hurry = asyncio.Event()
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(self._o.concurrency)]

    async def track(
        self,
        customer: str,
        meter: str,
        value: Union[int, float, str, None] = None,
        timestamp: Union[str, datetime, None] = None,
        id: Optional[str] = None,
        properties: Optional[Mapping[str, str]] = None,
    ) -> str:
        """Buffers one event and returns its id; waits while the buffer is full (or raises BufferFull)."""
        if self._closed:
            raise ClientClosed("track() after close(): the event was not buffered")
        self._start()
        assert self._room is not None and self._wake is not None
        event = make_event(customer, meter, value, timestamp, id, properties)
        line = serialize(event)
        while self._box.full():
            if self._o.on_buffer_full == "error":
                raise self._box.full_error()
            self._room.clear()
            await self._room.wait()
            if self._closed:
                raise ClientClosed("close() while track() waited for room: the event was not buffered")
        now = time.monotonic()
        if self._box.add(line, now):
            self._wake.set()
        return str(event["id"])

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything buffered now; returns when Tally acknowledged (or refused) all of it, else raises
        DeliveryError after `timeout` (default flush_timeout); delivery goes on."""
        timeout = self._o.flush_timeout if timeout is None else timeout
        done = asyncio.Event()
        if not self._box.barrier(done):
            return
        self._start()
        assert self._wake is not None and self._hurry is not None
        self._wake.set()
        self._hurry.set()
        self._hurry = asyncio.Event()
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pending = self._box.pending()
            raise DeliveryError(
                f"flush(): {len(pending)} events not acknowledged by Tally within {timeout} s (still retrying)", pending
            ) from None

    async def close(self, timeout: Optional[float] = None) -> None:
        """Stops taking events and delivers everything buffered; past `timeout` stops retrying and raises
        DeliveryError with the events Tally has not acknowledged in `.undelivered`."""
        timeout = self._o.flush_timeout if timeout is None else timeout
        if self._closed:
            return
        self._closed = True
        if self._room is not None:
            self._room.set()
        try:
            await self.flush(timeout)
        except DeliveryError:
            self._box.abandoned = True
            if self._hurry is not None:
                self._hurry.set()
            pending = self._box.pending()
            raise DeliveryError(
                f"close(): {len(pending)} events not acknowledged by Tally within {timeout} s; they are in "
                ".undelivered (sending them again with their ids is safe)",
                pending,
            ) from None
        finally:
            self._stopped = True
            if self._gave_up is not None and self._wake is not None:
                self._gave_up.set()
                self._wake.set()
            for w in self._workers:
                w.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)

    def metrics(self) -> Dict[str, int]:
        return dict(self._box.metrics)

    async def __aenter__(self) -> "AsyncTally":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _work(self) -> None:
        assert self._wake is not None
        while not (self._box.abandoned or self._stopped):
            now = time.monotonic()
            if self._box.due(now):
                await self._deliver(self._box.take())
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._box.wait_time(now))
            except asyncio.TimeoutError:
                pass

    async def _deliver(self, batch: List[Item]) -> None:
        o = self._o
        assert self._gave_up is not None and self._room is not None
        attempt = 0
        flushes = self._box.flushes
        while batch and not self._box.abandoned:
            lines, size = self._box.body(batch)
            outcome = await asyncio.to_thread(self._post, lines, size)
            if self._box.abandoned:
                return
            if outcome.kind == "retry":
                attempt, flushes = self._box.attempt(attempt, flushes)
            step = self._box.after(batch, outcome, attempt, self._delay)
            self._room.set()
            if step.rejections and o.on_rejected:
                try:
                    o.on_rejected(step.rejections)
                except Exception:  # a failing callback must not stop the other events
                    pass
            if step.delay is not None:
                if o.on_retry:
                    o.on_retry(step.retry_reason or "", len(batch), attempt, step.delay)
                await self._retry_wait(step.delay, outcome.retry_after or 0.0)
                self._box.retried(batch)
        self._box.finished(batch)

    async def _retry_wait(self, delay: float, retry_after: float) -> None:
        assert self._hurry is not None and self._gave_up is not None
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._hurry.wait(), delay)
        except asyncio.TimeoutError:
            return
        floor = min(delay, retry_after) - (time.monotonic() - started)
        if floor > 0 and not self._box.abandoned:
            try:
                await asyncio.wait_for(self._gave_up.wait(), floor)
            except asyncio.TimeoutError:
                pass

    def _post(self, lines: List[str], size: int) -> Outcome:
        body, headers = encode_batch(lines, size, self._o.gzip_above_bytes)
        return post_batch(self._o.url, self._o.api_key, body, headers, len(lines), self._o.request_timeout)

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        return retry_delay(attempt, retry_after, self._o.retry_base, self._o.retry_max, random.random)

    async def _read(self, read: "reads.Read") -> Any:
        return await asyncio.to_thread(reads.run, self._o.url, self._o.api_key, self._o.request_timeout, read)

    async def usage(
        self, customer: str, meter: str, granularity: str, from_: str, to: str, **kw: Any
    ) -> "reads.UsageSeries":
        return cast("reads.UsageSeries", await self._read(reads.usage(customer, meter, granularity, from_, to, **kw)))

    async def summary(self, customer: str, period: Optional[str] = None) -> Dict[str, Any]:
        return cast("Dict[str, Any]", await self._read(reads.summary(customer, period)))

    async def invoice_preview(self, customer: str, period: Optional[str] = None) -> Dict[str, Any]:
        return cast("Dict[str, Any]", await self._read(reads.invoice_preview(customer, period)))

    async def invoices(
        self,
        customer: Optional[str] = None,
        status: Optional[str] = None,
        period: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        return cast(List[Dict[str, Any]], await self._read(reads.invoices(customer, status, period, limit)))

    async def invoice(self, id: str) -> Dict[str, Any]:
        return cast("Dict[str, Any]", await self._read(reads.invoice(id)))

    async def credits(self, customer: str) -> Dict[str, Any]:
        return cast("Dict[str, Any]", await self._read(reads.credits(customer)))

    async def entitlement(self, customer: str, meter: str) -> "reads.Entitlement":
        return cast("reads.Entitlement", await self._read(reads.entitlement(customer, meter)))

    async def receipt(self, customer: str, id: str) -> Optional["reads.EventReceipt"]:
        return cast(Optional["reads.EventReceipt"], await self._read(reads.receipt(customer, id)))
