"""A small Python script that sends usage through the Python client - what docs/clients.md shows.

    TALLY_URL=http://127.0.0.1:3000 TALLY_KEY=... python3 clients/examples/send_usage.py --events 500 --seconds 10

Prints each event's id (one JSON line each), then the client's metrics once close() has delivered everything."""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from tally_client import DeliveryError, Tally  # noqa: E402  (installed: pip install ./clients/python)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customer", default="acme")
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    tally = Tally(url=os.environ.get("TALLY_URL", "http://127.0.0.1:3000"), api_key=os.environ["TALLY_KEY"],
                  flush_timeout=60.0)
    for i in range(args.events):
        event_id = tally.track(customer=args.customer, meter="api_calls", value=1, properties={"n": str(i)})
        print(json.dumps({"id": event_id}), flush=True)
        time.sleep(args.seconds / args.events)
    try:
        tally.close()
    except DeliveryError as err:
        print(f"{len(err.undelivered)} events not delivered: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"closed": tally.metrics()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
