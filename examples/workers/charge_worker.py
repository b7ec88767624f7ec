#!/usr/bin/env python3
"""An external Reprise activity worker serving `charge`, standard library only.

It long-polls the runtime's task API, charges through the payment provider
with the task's idempotency key, and reports the outcome. Two layers keep a
charge from happening twice: its own SQLite table keyed by order id (a retry
after a recorded success makes no provider call at all), and the provider's
Idempotency-Key (a retry after a lost response gets the same charge back).

    python3 charge_worker.py --api http://127.0.0.1:7979 --db worker.sqlite

--max-tasks N stops after N tasks; --die-after-poll takes one task and
exits without reporting (to test that the runtime retries it).
"""

import argparse
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.request

ACTIVITY = "charge"


def post(url, payload, headers=None, timeout=70):
    """POSTs JSON; returns (status, parsed body or None)."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
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


def open_records(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS charges (order_id TEXT PRIMARY KEY, charge_id TEXT NOT NULL)")
    db.commit()
    return db


def charge(task, records):
    """Returns ("complete", output) or ("fail", error)."""
    order = task["input"]
    recorded = records.execute(
        "SELECT charge_id FROM charges WHERE order_id = ?", (order["order_id"],)
    ).fetchone()
    if recorded:
        return "complete", {"charge_id": recorded[0], "from": "worker-record"}
    try:
        status, body = post(
            order["provider_url"] + "/charges",
            {"order_id": order["order_id"], "amount_cents": order["amount_cents"], "card": order["card"]},
            headers={"Idempotency-Key": task["idempotency_key"]},
            timeout=10,
        )
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return "fail", {"error_type": "ProviderUnreachable", "message": str(error)}
    if 200 <= status < 300:
        records.execute(
            "INSERT OR IGNORE INTO charges (order_id, charge_id) VALUES (?, ?)",
            (order["order_id"], body["charge_id"]),
        )
        records.commit()
        return "complete", {"charge_id": body["charge_id"], "from": "provider"}
    error_type = (body or {}).get("error_type", f"Http{status}")
    message = (body or {}).get("message", f"the provider answered {status}")
    retryable = status >= 500 or status == 429
    return "fail", {"error_type": error_type, "message": message, "non_retryable": not retryable}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the runtime's task API, e.g. http://127.0.0.1:7979")
    parser.add_argument("--db", required=True, help="the worker's own SQLite file")
    parser.add_argument("--max-tasks", type=int, default=0, help="stop after this many tasks (0: never)")
    parser.add_argument("--die-after-poll", action="store_true", help="take one task, then exit without reporting")
    parser.add_argument("--wait-ms", type=int, default=2000)
    args = parser.parse_args()
    records = open_records(args.db)
    handled = 0
    while args.max_tasks == 0 or handled < args.max_tasks:
        try:
            status, task = post(args.api + "/v1/activity-tasks/poll", {"activities": [ACTIVITY], "wait_ms": args.wait_ms})
        except (urllib.error.URLError, ConnectionError):
            continue
        if status == 204 or task is None:
            continue
        if status != 200:
            print(f"poll failed: {status} {task}", file=sys.stderr)
            return 1
        if args.die_after_poll:
            os._exit(0)
        verdict, payload = charge(task, records)
        token = task["task_token"]
        if verdict == "complete":
            status, answer = post(f"{args.api}/v1/activity-tasks/{token}/complete", {"output": payload})
        else:
            status, answer = post(f"{args.api}/v1/activity-tasks/{token}/fail", payload)
        print(f"{ACTIVITY} {task['input']['order_id']} attempt {task['attempt']}: {verdict} -> {status} {answer}", flush=True)
        handled += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
