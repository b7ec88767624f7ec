"""The determinism conformance probes in Python (componentize-py): every way
plain Python reaches time, randomness, sleeps, polls, output, the
environment, files, sockets and HTTP, through the standard library.

Answers the same keys as examples/conformance (Rust) and
examples/conformance-js; runtime/tests/integration/conformance.rs runs each
live, evicted, replayed and killed-and-resumed and compares the answers.
"""

import json
import os
import random
import select
import sys
import time

import wit_world
from wit_world.imports import durable


def attempt(action):
    """`{"ok": …}` or `{"error": …}`: replay equality covers error text."""
    try:
        return {"ok": repr(action())}
    except Exception as error:  # the probe reports whatever was raised
        return {"error": f"{type(error).__name__}: {error}"}


def connect():
    import socket

    with socket.create_connection(("127.0.0.1", 9), timeout=1):
        return "connected"


def http_get():
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:9/", timeout=1) as response:
        return response.status


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        sleep_ms = json.loads(input)["sleep_ms"]
        wall_ms = int(time.time() * 1000)
        durable_ms = durable.now_ms()
        drawn = repr(random.random())
        secure_random = os.urandom(8).hex()
        printed = f"random={drawn}"
        print(printed)

        slept_from = time.monotonic()
        time.sleep(sleep_ms / 1000)
        slept_ms = int((time.monotonic() - slept_from) * 1000)

        # The iteration order of a set of strings follows the string hash
        # secret, fixed at build time: one durable timer per name, as long
        # as the name, puts that order in the journal, so a rebuild that
        # iterated differently would not replay.
        order = list({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})
        for name in order:
            durable.sleep_ms(len(name))

        # A clock looked at through `select` (a `wasi:io/poll` with a
        # timeout), before and after a longer sleep.
        deadline = time.monotonic() + 0.05
        before = time.monotonic() >= deadline
        select.select([], [], [], 0.1)
        poll = [before, time.monotonic() >= deadline]

        return json.dumps(
            {
                "language": "python",
                "wall_ms": wall_ms,
                "durable_ms": durable_ms,
                "random": drawn,
                "secure_random": secure_random,
                "printed": printed,
                "slept_ms": slept_ms,
                "poll": poll,
                "set_order": order,
                "string_hash": hash("reprise"),
                "env": {
                    "vars": sorted(os.environ.items()),
                    "args": sys.argv,
                    "cwd": attempt(os.getcwd),
                },
                "files": attempt(lambda: open("/etc/hostname").read()),
                "sockets": attempt(connect),
                "http": attempt(http_get),
            }
        )
