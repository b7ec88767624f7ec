"""The hello workflow in Python, built with componentize-py.

Same steps as examples/hello: time and randomness through the host's
`durable` interface and through plain `time`/`random` (journaled by the
host's virtual WASI), one `greet` call, then two rounds of a durable sleep
and a `record` call. The output echoes every value the code saw.
"""

import json
import random
import time

import wit_world
from wit_world.imports import durable, types
from componentize_py_types import Err


def _options(start_to_close_ms=None):
    return types.ActivityOptions(
        retry=None,
        start_to_close_timeout_ms=start_to_close_ms,
        schedule_to_close_timeout_ms=None,
        heartbeat_timeout_ms=None,
        compensates=None,
        idempotency_key=None,
    )


def _call(name, payload, start_to_close_ms=None):
    try:
        return json.loads(durable.call_activity(name, json.dumps(payload), _options(start_to_close_ms)))
    except Err as failure:
        error = failure.value.last_error
        raise Err(types.WorkflowError(error_type=error.error_type, message=error.message, details=error.details))


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        args = json.loads(input)
        # componentize-py pre-initializes `random` at build time, so every
        # run would draw the same numbers: reseed it from journaled bytes.
        random.seed(durable.random_bytes(16))

        sdk_now_ms = durable.now_ms()
        std_now_ms = int(time.time() * 1000)
        sdk_random = int.from_bytes(durable.random_bytes(8), "little")
        rand_random = random.getrandbits(64)
        durable.log(types.LogLevel.INFO, f"hello-py workflow started for {args['name']}")
        print("stdout is captured as a log line too")

        greeting = _call("greet", {"name": args["name"]})["greeting"]
        ledger_entries = []
        for step in (1, 2):
            durable.sleep_ms(args.get("sleep_ms", 100))
            recorded = _call("record", {"step": step, "work_ms": args.get("work_ms", 0)}, 30_000)
            ledger_entries.append(recorded["entry"])

        return json.dumps({
            "greeting": greeting,
            "sdk_now_ms": sdk_now_ms,
            "std_now_ms": std_now_ms,
            "sdk_random": sdk_random,
            "rand_random": rand_random,
            "ledger_entries": ledger_entries,
        })
