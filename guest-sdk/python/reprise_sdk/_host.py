"""The one place that reaches componentize-py's generated bindings.

They exist only inside a component (componentize-py generates `wit_world`
while it builds one), so they are imported on first use: the rest of the
package imports on a plain Python too — the build command runs there.
Inside a component, `_component` has imported them at build time (module
files cannot be read at run time), so the first use finds them loaded.

The SDK calls the `durable` interface through `bindings()`, which gives
every journaled import a waiting query's answer first (see `_queries`):
no call site can forget to.
"""

from . import _queries

_bindings = None
_answering_bindings = None

# The imports the host does not journal: calling them never answers a
# waiting query first. Every other function of `durable` does.
NOT_DURABLE = frozenset({"info", "log", "next_query", "answer_query"})


class _AnsweringDurable:
    """The `durable` interface as the SDK calls it: each journaled function
    first asks the host whether a query waits and answers it, while the
    workflow has query handlers or update validators registered."""

    __slots__ = ("_raw",)

    def __init__(self, raw):
        self._raw = raw

    def __getattr__(self, name):
        member = getattr(self._raw, name)
        # Records, enums and the unjournaled imports pass as they are.
        if name in NOT_DURABLE or isinstance(member, type) or not callable(member):
            return member

        def journaled(*args):
            answer_waiting_query()
            return member(*args)

        return journaled


def _raw_bindings():
    global _bindings
    if _bindings is None:
        try:
            from componentize_py_types import Err, Ok
            from wit_world.imports import durable, types
        except ImportError as error:
            raise RuntimeError(
                "reprise_sdk's workflow calls work only inside a workflow component: "
                "build it with `python3 -m reprise_sdk.build app.py -o app.wasm`"
            ) from error
        _bindings = (durable, types, Ok, Err)
    return _bindings


def bindings():
    """`(durable, types, Ok, Err)`: the `durable` interface (its journaled
    functions answering a waiting query first), the WIT types and
    componentize-py's result cases."""
    global _answering_bindings
    if _answering_bindings is None:
        durable, types, Ok, Err = _raw_bindings()
        _answering_bindings = (_AnsweringDurable(durable), types, Ok, Err)
    return _answering_bindings


def answer_waiting_query():
    """Asks the host once whether a query waits and answers it — unless no
    handler or validator is registered: then the host is not asked."""
    if _queries.nothing_registered():
        return
    durable, types, Ok, Err = _raw_bindings()
    _queries.answer(durable, types, Ok, Err)
