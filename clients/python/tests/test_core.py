"""Unit tests of the client's rules (no server): ids, Retry-After, backoff, what an answer means, batch bodies, and
the outbox's bookkeeping. The behaviour against a real Tally is the conformance suite's
(test/clients-conformance.test.ts)."""

import gzip
import json
import unittest
import uuid

from tally_client import Tally
from tally_client._core import Outbox, Outcome, classify, encode_batch, parse_retry_after, retry_delay, uuid7


class Uuid7Test(unittest.TestCase):
    def test_layout(self) -> None:
        u = uuid.UUID(uuid7(1_700_000_000_123))
        self.assertEqual(u.version, 7)
        self.assertEqual(u.variant, uuid.RFC_4122)
        self.assertEqual(int(u.hex[:12], 16), 1_700_000_000_123)

    def test_strictly_increasing_within_a_millisecond_and_when_the_clock_goes_back(self) -> None:
        ids = [uuid7(1_800_000_000_000) for _ in range(5000)] + [uuid7(1_700_000_000_000) for _ in range(10)]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), len(ids))


class RetryTest(unittest.TestCase):
    def test_retry_after_seconds_and_dates(self) -> None:
        self.assertEqual(parse_retry_after("5"), 5.0)
        self.assertEqual(parse_retry_after(None), None)
        self.assertEqual(parse_retry_after("soon"), None)
        self.assertAlmostEqual(parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) or 0, 10.0)

    def test_backoff_grows_is_capped_and_never_undercuts_retry_after(self) -> None:
        top = lambda: 0.999999  # noqa: E731
        self.assertAlmostEqual(retry_delay(1, None, 0.2, 30, top), 0.2, places=3)
        self.assertAlmostEqual(retry_delay(3, None, 0.2, 30, top), 0.8, places=3)
        self.assertAlmostEqual(retry_delay(20, None, 0.2, 30, top), 30, places=3)
        self.assertGreaterEqual(retry_delay(1, 2.0, 0.2, 30, lambda: 0.0), 2.0)
        self.assertLessEqual(retry_delay(1, 2.0, 0.2, 30, top), 2.2)


class ClassifyTest(unittest.TestCase):
    def test_answers(self) -> None:
        self.assertEqual(classify(202, '{"accepted":3,"duplicates":2}', None, 5).duplicates, 2)
        retry = classify(503, '{"code":"database_unavailable"}', "3", 5)
        self.assertEqual((retry.kind, retry.retry_after), ("retry", 3.0))
        self.assertEqual(classify(429, "", "1", 5).kind, "retry")
        self.assertEqual(classify(502, "bad gateway", None, 5).kind, "retry")
        self.assertEqual(classify(413, "{}", None, 5).kind, "too-large")
        self.assertEqual(classify(401, '{"code":"unauthorized"}', None, 5).kind, "refused-all")

    def test_events_named_by_index_are_refused_and_the_rest_kept(self) -> None:
        body = {"code": "events_rejected", "errors": [
            {"index": 1, "field": "events[1].meter", "message": "unknown meter"},
            {"index": 1, "field": "events[1].value", "message": "too many decimals"},
            {"index": 3, "field": "events[3].timestamp", "message": "too old"}]}
        o = classify(422, json.dumps(body), None, 5)
        self.assertEqual(o.kind, "refused-some")
        self.assertEqual(sorted(o.refused), [1, 3])
        self.assertEqual(len(o.refused[1]), 2)

    def test_a_problem_without_an_event_index_refuses_the_whole_batch(self) -> None:
        body = {"code": "invalid_events", "errors": [{"field": "events", "message": "not an array"}]}
        self.assertEqual(classify(400, json.dumps(body), None, 5).kind, "refused-all")
        out_of_range = {"code": "invalid_events", "errors": [{"index": 9, "field": "x", "message": "y"}]}
        self.assertEqual(classify(400, json.dumps(out_of_range), None, 5).kind, "refused-all")


class EncodeTest(unittest.TestCase):
    def test_json_small_gzip_ndjson_large(self) -> None:
        lines = ['{"id":"a"}', '{"id":"b"}']
        body, headers = encode_batch(lines, 22, 1000)
        self.assertEqual(json.loads(body), {"events": [{"id": "a"}, {"id": "b"}]})
        self.assertEqual(headers["Content-Type"], "application/json")
        body, headers = encode_batch(lines, 22, 10)
        self.assertEqual(gzip.decompress(body).decode().split("\n"), lines)
        self.assertEqual(headers, {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})


class OutboxTest(unittest.TestCase):
    def box(self, events: int = 3, size: int = 10_000, interval: float = 1.0) -> Outbox:
        return Outbox(max_batch_events=events, max_batch_bytes=size, flush_interval=interval, max_buffered=5)

    def test_a_batch_is_due_by_count_bytes_or_age(self) -> None:
        box = self.box()
        box.add('{"id":"1"}', now=0)
        self.assertFalse(box.due(0.5))
        self.assertTrue(box.due(1.0))
        box.add('{"id":"2"}', now=0)
        box.add('{"id":"3"}', now=0)
        self.assertTrue(box.due(0))
        small = self.box(size=15)
        small.add('{"id":"1"}', now=0)
        small.add('{"id":"2"}', now=0)
        self.assertTrue(small.due(0))
        self.assertEqual(len(small.take()), 1)

    def test_refused_events_leave_the_rest_goes_again_and_flush_waits_for_both(self) -> None:
        box = self.box()
        for i in range(3):
            box.add(json.dumps({"id": str(i)}), now=0)

        class Flag:
            done = False

            def set(self) -> None:
                self.done = True

        flag = Flag()
        self.assertTrue(box.barrier(flag))
        batch = box.take()
        step = box.after(batch, Outcome("refused-some", 422, "events_rejected", refused={1: []}), 0, None)
        self.assertEqual([r.event["id"] for r in step.rejections], ["1"])
        self.assertEqual([json.loads(i.line)["id"] for i in batch], ["0", "2"])
        self.assertFalse(flag.done)
        box.after(batch, Outcome("delivered", 202, duplicates=1), 0, None)
        self.assertTrue(flag.done)
        self.assertEqual(box.metrics, {"sent": 2, "duplicates": 1, "retried": 2, "rejected": 1, "buffered": 0,
                                       "batches": 1})

    def test_413_halves_the_batch_and_later_ones(self) -> None:
        box = self.box(events=4)
        for i in range(4):
            box.add(json.dumps({"id": str(i)}), now=0)
        batch = box.take()
        box.after(batch, Outcome("too-large", 413), 0, None)
        self.assertEqual([json.loads(i.line)["id"] for i in batch], ["0", "1"])
        self.assertEqual([json.loads(i.line)["id"] for i in box.queue], ["2", "3"])
        self.assertEqual(box.max_events, 2)
        self.assertTrue(box.due(0))

    def test_a_retry_keeps_the_batch_and_asks_for_a_wait(self) -> None:
        box = self.box()
        box.add('{"id":"1"}', now=0)
        batch = box.take()
        step = box.after(batch, Outcome("retry", 503, retry_after=2.0), 1, lambda attempt, ra: ra)
        self.assertEqual((len(batch), step.delay), (1, 2.0))
        self.assertEqual(box.pending(), [{"id": "1"}])


class OptionsTest(unittest.TestCase):
    def test_bad_options_are_refused_at_once(self) -> None:
        with self.assertRaisesRegex(ValueError, "max_batch_events"):
            Tally(url="http://127.0.0.1:9", api_key="k", max_batch_events=0)
        with self.assertRaisesRegex(ValueError, "on_buffer_full"):
            Tally(url="http://127.0.0.1:9", api_key="k", on_buffer_full="drop")


if __name__ == "__main__":
    unittest.main()
