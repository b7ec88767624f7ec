"""The component's export: the `workflow` world's `run`, bound to the
`@workflow` function. Imported only inside a component (the build's entry
module imports it), where componentize-py's `wit_world` exists."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

from .errors import WorkflowError
from .workflow import registered_workflow, run_registered

# The build imports the workflow module first: a module without a
# `@workflow` fails the build here, not every execution later.
if registered_workflow() is None:
    raise ValueError(
        "the workflow module defines no @workflow function: decorate `def run(ctx, input)` "
        "with `@reprise_sdk.workflow` (or build activities with --world activity)"
    )


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        try:
            return run_registered(input)
        except WorkflowError as error:
            raise Err(error._to_wit(types)) from None
