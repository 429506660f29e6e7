"""flush()/close() cut a long backoff short (never below Retry-After): against a small stand-in for Tally's ingest
endpoint that drops the first connection and acknowledges every later batch. (The behaviour against a real Tally
is the conformance suite's.)"""

import asyncio
import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List

from tally_client import AsyncTally, Tally


class _Ingest(BaseHTTPRequestHandler):
    requests: List[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(len(body["events"]))
        if len(self.requests) == 1:
            self.connection.close()  # the connection drops: the client must retry
            return
        answer = json.dumps({"accepted": len(body["events"]), "duplicates": 0}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


class FlushCutsBackoffTest(unittest.TestCase):
    def setUp(self) -> None:
        _Ingest.requests = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.options = {"retry_base": 60.0, "retry_max": 60.0, "max_batch_events": 2}

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def test_sync(self) -> None:
        waiting = threading.Event()
        client = Tally(url=self.url, api_key="k", on_retry=lambda *a: waiting.set(), **self.options)
        client.track(customer="c", meter="m")
        client.track(customer="c", meter="m")
        self.assertTrue(waiting.wait(10))
        started = time.monotonic()
        client.close(timeout=5)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(client.metrics()["sent"], 2)

    def test_asyncio(self) -> None:
        async def run() -> None:
            waiting = asyncio.Event()
            client = AsyncTally(url=self.url, api_key="k", on_retry=lambda *a: waiting.set(), **self.options)
            await client.track(customer="c", meter="m")
            await client.track(customer="c", meter="m")
            await asyncio.wait_for(waiting.wait(), 10)
            started = time.monotonic()
            await client.close(timeout=5)
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(client.metrics()["sent"], 2)

        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
