"""Query handlers and update validators: what the host's query replays ask
for (see `next-query` in the WIT). They live in the guest's memory only;
nothing about them is journaled.

While one is registered, `_host` asks the host once, before every durable
call and after the workflow returns, whether a query waits, and answers it
here. Without any, the host is never asked.
"""

import inspect
import json

from ._json import encode
from .errors import WorkflowError

_queries = {}
_validators = {}
# Set while a handler runs: a durable call it makes goes to the host (which
# fails the query) instead of asking for the same query again, forever.
_answering = False


def reset():
    """Forgets every handler: a run starts with none."""
    global _answering
    _queries.clear()
    _validators.clear()
    _answering = False


def nothing_registered():
    return not _queries and not _validators


class Handler:
    """A query handler, update validator or update handler: called with the
    decoded args, or with none when it takes no parameter."""

    __slots__ = ("function", "takes_args")

    def __init__(self, function, what):
        if not callable(function):
            raise TypeError(f"{what} is a function of the decoded args; got {type(function).__name__} {function!r}")
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            # No signature to read (some builtins): called with the args.
            signature = None
        self.function = function
        if signature is None or _binds(signature, None):
            self.takes_args = True
        elif _binds(signature):
            self.takes_args = False
        else:
            raise TypeError(
                f"{what} takes the decoded args (one parameter) or nothing; "
                f"`{getattr(function, '__qualname__', function)}` has the signature {signature}"
            )

    def __call__(self, args, args_json, what, invalid_type):
        """`function(args)`; a handler without parameters takes only `null`
        args (`invalid_type` otherwise, as the Rust SDK's `()`)."""
        if self.takes_args:
            return self.function(args)
        if args is not None:
            raise WorkflowError(invalid_type, f"the args of {what} ({args_json}) do not fit: it takes no args")
        return self.function()


def _binds(signature, *args):
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def add_query(name, handler):
    _queries[name] = Handler(handler, f"the handler of query `{name}`")


def add_validator(name, validator):
    _validators[name] = Handler(validator, f"the validator of update `{name}`")


def decode_args(args_json, what, invalid_type):
    try:
        return json.loads(args_json)
    except ValueError as error:
        raise WorkflowError(invalid_type, f"the args of {what} ({args_json}) do not fit: {error}") from None


def failure(error_type, what, error):
    """An unexpected exception of a handler, as the error its caller gets."""
    return WorkflowError(error_type, f"{what} failed: {type(error).__name__}: {error}")


def answer(durable, types, Ok, Err):
    """Asks the host once whether a query waits and answers it."""
    global _answering
    if _answering or nothing_registered():
        return
    request = durable.next_query()
    if request is None:
        return
    _answering = True
    try:
        outcome = Ok(dispatch(request, durable.QueryKind))
    except WorkflowError as error:
        outcome = Err(error._to_wit(types))
    finally:
        _answering = False
    durable.answer_query(outcome)


def dispatch(request, QueryKind):
    """The JSON answer to `request`, or the `WorkflowError` to answer with."""
    name = request.name
    if request.kind == QueryKind.VALIDATE_UPDATE:
        return _validate(name, request.args)
    handler = _queries.get(name)
    if handler is None:
        known = ", ".join(sorted(_queries)) or "none"
        raise WorkflowError("UnknownQuery", f"this workflow has no handler for query `{name}`; it answers: {known}")
    what = f"query `{name}`"
    args = decode_args(request.args, what, "InvalidQueryArgs")
    try:
        value = handler(args, request.args, what, "InvalidQueryArgs")
    except WorkflowError:
        raise
    except Exception as error:
        raise failure("QueryFailed", what, error) from None
    try:
        return encode(value, f"the answer to {what}")
    except (TypeError, ValueError) as error:
        raise WorkflowError("SerializationError", f"could not encode the answer to {what}: {error}") from None


def _validate(name, args_json):
    validator = _validators.get(name)
    if validator is None:
        # No validator: every update of that name is accepted.
        return "null"
    what = f"update `{name}`"
    args = decode_args(args_json, what, "InvalidUpdateArgs")
    try:
        verdict = validator(args, args_json, what, "InvalidUpdateArgs")
    except WorkflowError:
        raise
    except Exception as error:
        raise failure("QueryFailed", f"the validator of {what}", error) from None
    if isinstance(verdict, WorkflowError):
        raise verdict
    # Any other return accepts the update: only an error rejects it.
    return "null"
