"""The activity component's export: the `activities` interface, bound to
the `@activity` functions. Imported only inside a component."""

import wit_world.exports
from componentize_py_types import Err

# Imported here, while componentize-py pre-initializes the component: the
# module files are not there at run time, so `ActivityContext`'s own
# (lazy) import finds this one in `sys.modules`.
from wit_world.imports import activity_context, types  # noqa: F401

from .activity import run_served, served_names
from .errors import ActivityError

# The build imports the activities module first: one that serves nothing
# fails the build here.
if not served_names():
    raise ValueError(
        "the activities module defines no @activity function: decorate `def charge(ctx, input)` "
        "with `@reprise_sdk.activity.activity(\"charge\")`"
    )


class Activities(wit_world.exports.Activities):
    def names(self):
        return served_names()

    def run(self, name: str, input: str) -> str:
        try:
            return run_served(name, input)
        except ActivityError as error:
            raise Err(
                types.ActivityError(
                    error_type=error.error_type,
                    message=error.message,
                    details=error.details_json(),
                    non_retryable=error.non_retryable,
                )
            ) from None
