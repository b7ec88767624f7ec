#!/usr/bin/env python3
"""An external Reprise activity worker serving `charge`, on `reprise_worker`.

It charges through the payment provider and returns the charge id. Two
layers keep a charge from happening twice: its own SQLite table keyed by
order id (a retry after a recorded success makes no provider call at all),
and the provider's Idempotency-Key, set to the task's idempotency key (a
retry after a lost response gets the same charge back).

    python3 examples/workers/charge_worker.py --api http://127.0.0.1:7979 --db worker.sqlite

SIGTERM or Ctrl-C stops it gracefully: no new tasks, the charge in flight
finishes and is reported, then it exits 0. REPRISE_API_KEY is sent as the
tenant's key when set.
"""

import argparse
import http.client
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.request

try:
    from reprise_worker import ActivityError, NonRetryableError, Worker
except ImportError:  # run from a checkout, without `pip install ./worker-sdk/python`
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "worker-sdk", "python"))
    from reprise_worker import ActivityError, NonRetryableError, Worker


class ChargeRecords:
    """The worker's own record of the charges it made, by order id."""

    def __init__(self, path):
        self.path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS charges (order_id TEXT PRIMARY KEY, charge_id TEXT NOT NULL)"
            )

    def _connect(self):
        # One connection per call: handlers run on several threads.
        return sqlite3.connect(self.path, timeout=10)

    def find(self, order_id):
        with self._connect() as db:
            row = db.execute("SELECT charge_id FROM charges WHERE order_id = ?", (order_id,)).fetchone()
        return row[0] if row else None

    def record(self, order_id, charge_id):
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO charges (order_id, charge_id) VALUES (?, ?)", (order_id, charge_id)
            )


def post_json(url, payload, headers, timeout):
    """POSTs JSON; returns (status, parsed body or None)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"message": body.decode(errors="replace")}


def charge_handler(records):
    def charge(order, ctx):
        recorded = records.find(order["order_id"])
        if recorded:
            return {"charge_id": recorded, "from": "worker-record"}
        ctx.heartbeat({"step": "charging", "order_id": order["order_id"]})
        payment = {"order_id": order["order_id"], "amount_cents": order["amount_cents"], "card": order["card"]}
        try:
            status, body = post_json(
                order["provider_url"] + "/charges",
                payment,
                headers={"Idempotency-Key": ctx.idempotency_key, "traceparent": ctx.traceparent},
                timeout=10,
            )
        except (OSError, http.client.HTTPException) as error:
            # The charge may have gone through: the retry's Idempotency-Key finds it.
            raise ActivityError("ProviderUnreachable", str(error) or type(error).__name__)
        if 200 <= status < 300:
            records.record(order["order_id"], body["charge_id"])
            return {"charge_id": body["charge_id"], "from": "provider"}
        error_type = (body or {}).get("error_type", f"Http{status}")
        message = (body or {}).get("message", f"the provider answered {status}")
        if status >= 500 or status == 429:
            raise ActivityError(error_type, message)
        raise NonRetryableError(error_type, message)

    return charge


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the runtime's task API, e.g. http://127.0.0.1:7979")
    parser.add_argument("--db", required=True, help="the worker's own SQLite file")
    parser.add_argument("--max-concurrent", type=int, default=4, help="charges in flight at once")
    parser.add_argument("--wait-ms", type=int, default=30_000, help="how long one poll waits for a task")
    args = parser.parse_args()
    worker = Worker(
        args.api,
        activities={"charge": charge_handler(ChargeRecords(args.db))},
        max_concurrent=args.max_concurrent,
        poll_wait_ms=args.wait_ms,
    )
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
