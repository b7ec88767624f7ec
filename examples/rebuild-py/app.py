"""A Python workflow whose journal depends on the iteration order of a set
of strings — which depends on the interpreter's string hash secret.

componentize-py fixes that secret when it pre-initializes the interpreter
at build time; `scripts/build-python-guest` makes the build's randomness
fixed, so two builds of this file replay each other's histories.
"""

import json

import wit_world
from wit_world.imports import durable


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        names = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
        order = list(names)
        # One durable timer per name, as long as the name: the history
        # records the set's order.
        for name in order:
            durable.sleep_ms(len(name))
        return json.dumps({"order": order, "hash": hash("reprise")})
