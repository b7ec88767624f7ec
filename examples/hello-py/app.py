"""The hello workflow in Python, on the Python SDK (guest-sdk/python).

Same steps as examples/hello: time and randomness through the SDK's
`Context` and through plain `time`/`random` (journaled by the host's
virtual WASI), one `greet` call, then two rounds of a durable sleep and a
`record` call. The output echoes every value the code saw.

Plain `random` needs no reseeding: CPython seeds it from `os.urandom` when
the instance starts, and the host journals those bytes.
"""

import logging
import random
import time
from datetime import timedelta

from reprise_sdk import workflow

log = logging.getLogger("hello-py")


@workflow
def run(ctx, args):
    sdk_now_ms = ctx.now_ms()
    std_now_ms = int(time.time() * 1000)
    sdk_random = ctx.random_int(64)
    rand_random = random.getrandbits(64)
    log.info("workflow started for %s", args["name"])
    print("stdout is captured as a log line too")

    greeting = ctx.call_activity("greet", {"name": args["name"]})["greeting"]
    ledger_entries = []
    for step in (1, 2):
        ctx.sleep(timedelta(milliseconds=args.get("sleep_ms", 100)))
        recorded = (
            ctx.activity("record")
            .input({"step": step, "work_ms": args.get("work_ms", 0)})
            .start_to_close(timedelta(seconds=30))
            .call()
        )
        ledger_entries.append(recorded["entry"])

    return {
        "greeting": greeting,
        "sdk_now_ms": sdk_now_ms,
        "std_now_ms": std_now_ms,
        "sdk_random": sdk_random,
        "rand_random": rand_random,
        "ledger_entries": ledger_entries,
    }
