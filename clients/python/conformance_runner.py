"""The Python side of the clients' conformance suite (clients/conformance/scenarios.json), spawned by
test/clients-conformance.test.ts: reads one scenario run as JSON on stdin (Tally's URL, a key, client options with
_ms in milliseconds, the events, an optional count to await), drives the Python client (--mode sync or async),
and prints what happened as JSON on stdout. The test checks it against Tally's receipts."""

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tally_client import AsyncTally, DeliveryError, Rejection, Tally  # noqa: E402


def client_options(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Scenario options are the TypeScript client's (ms); Python's take seconds under the same name without _ms."""
    renamed = {"flush_interval_ms": "flush_interval", "request_timeout_ms": "request_timeout",
               "retry_base_ms": "retry_base", "retry_max_ms": "retry_max", "flush_timeout_ms": "flush_timeout"}
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        if key in renamed:
            out[renamed[key]] = value / 1000
        else:
            out[key] = value
    return out


def run_sync(spec: Dict[str, Any]) -> Dict[str, Any]:
    rejected: List[Dict[str, Any]] = []

    def on_rejected(rs: List[Rejection]) -> None:
        rejected.extend({"id": r.event["id"], "status": r.status, "code": r.code} for r in rs)

    client = Tally(url=spec["url"], api_key=spec["api_key"], on_rejected=on_rejected, **client_options(spec["options"]))
    tracked, max_buffered = [], 0
    for e in spec["events"]:
        try:
            tracked.append({"id": client.track(**e), "error": None})
        except Exception as err:  # noqa: BLE001 - reported to the suite
            tracked.append({"id": None, "error": type(err).__name__})
        max_buffered = max(max_buffered, client.metrics()["buffered"])
    reached = None
    if spec.get("await_sent") is not None:
        deadline = time.monotonic() + 10
        while client.metrics()["sent"] < spec["await_sent"] and time.monotonic() < deadline:
            time.sleep(0.01)
        reached = client.metrics()["sent"] >= spec["await_sent"]
    close: Dict[str, Any] = {"ok": True, "undelivered": 0, "error": None}
    try:
        client.close()
    except DeliveryError as err:
        close = {"ok": False, "undelivered": len(err.undelivered), "error": str(err)}
    return {"tracked": tracked, "rejected": rejected, "metrics": client.metrics(), "close": close,
            "max_buffered": max_buffered, "await_sent_reached": reached}


async def run_async(spec: Dict[str, Any]) -> Dict[str, Any]:
    rejected: List[Dict[str, Any]] = []

    def on_rejected(rs: List[Rejection]) -> None:
        rejected.extend({"id": r.event["id"], "status": r.status, "code": r.code} for r in rs)

    client = AsyncTally(url=spec["url"], api_key=spec["api_key"], on_rejected=on_rejected,
                        **client_options(spec["options"]))
    tracked, max_buffered = [], 0
    for e in spec["events"]:
        try:
            tracked.append({"id": await client.track(**e), "error": None})
        except Exception as err:  # noqa: BLE001 - reported to the suite
            tracked.append({"id": None, "error": type(err).__name__})
        max_buffered = max(max_buffered, client.metrics()["buffered"])
    reached = None
    if spec.get("await_sent") is not None:
        deadline = time.monotonic() + 10
        while client.metrics()["sent"] < spec["await_sent"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        reached = client.metrics()["sent"] >= spec["await_sent"]
    close: Dict[str, Any] = {"ok": True, "undelivered": 0, "error": None}
    try:
        await client.close()
    except DeliveryError as err:
        close = {"ok": False, "undelivered": len(err.undelivered), "error": str(err)}
    return {"tracked": tracked, "rejected": rejected, "metrics": client.metrics(), "close": close,
            "max_buffered": max_buffered, "await_sent_reached": reached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["sync", "async"], default="sync")
    args = parser.parse_args()
    spec = json.load(sys.stdin)
    out = run_sync(spec) if args.mode == "sync" else asyncio.run(run_async(spec))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
