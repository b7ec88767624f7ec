#!/usr/bin/env python3
"""A worker on `reprise_worker` whose activities each show one behaviour
the integration tests (runtime/tests/integration/workers.rs) check:

- `fail-typed`   raises the typed error its input describes;
- `fail-until`   raises an uncaught TimeoutError until attempt `succeed_on`;
- `resume`       attempt 1 heartbeats {"done": 3} and fails; later
                 attempts return what they resumed from;
- `hold`         appends "start ID" to --trace, waits for the file
                 --release to exist, appends "end ID", returns {"held": ID}.

    behaviours.py --api URL --trace FILE --release FILE [--max-concurrent N]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "worker-sdk", "python"))
from reprise_worker import ActivityError, NonRetryableError, Worker  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--trace", required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()

    def trace(line):
        # One write per line in append mode: lines from threads never interleave.
        with open(args.trace, "a") as file:
            file.write(line + "\n")

    def fail_typed(spec, ctx):
        if spec.get("non_retryable"):
            raise NonRetryableError(spec["error_type"], spec["message"], {"attempt": ctx.attempt})
        raise ActivityError(spec["error_type"], spec["message"], {"attempt": ctx.attempt})

    def fail_until(spec, ctx):
        if ctx.attempt < spec["succeed_on"]:
            raise TimeoutError(f"attempt {ctx.attempt} is too early")
        return {"succeeded_on": ctx.attempt}

    def resume(_input, ctx):
        if ctx.attempt == 1:
            ctx.heartbeat({"done": 3})
            raise ActivityError("Interrupted", "stopped after step 3")
        return {"attempt": ctx.attempt, "resumed_from": ctx.last_heartbeat_details}

    def hold(spec, ctx):
        trace(f"start {spec['id']}")
        # The handler's own wait for the test's go-ahead.
        while not os.path.exists(args.release):
            time.sleep(0.02)
        trace(f"end {spec['id']}")
        return {"held": spec["id"], "attempt": ctx.attempt}

    Worker(
        args.api,
        activities={"fail-typed": fail_typed, "fail-until": fail_until, "resume": resume, "hold": hold},
        max_concurrent=args.max_concurrent,
        poll_wait_ms=1_000,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
