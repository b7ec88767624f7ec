"""Python `logging` routed to the host's durable log (`durable.log`): each
line is tied to the execution and muted while it replays work it already
did, so a replay does not repeat its logs.
"""

import logging
import threading

from . import _host

_installed = False


def _wit_level(levelno, types):
    if levelno < logging.DEBUG:
        return types.LogLevel.TRACE
    if levelno < logging.INFO:
        return types.LogLevel.DEBUG
    if levelno < logging.WARNING:
        return types.LogLevel.INFO
    if levelno < logging.ERROR:
        return types.LogLevel.WARN
    return types.LogLevel.ERROR


def emit(levelno, message):
    if isinstance(levelno, bool) or not isinstance(levelno, int):
        raise TypeError(f"the log level is a logging level such as logging.INFO; got {levelno!r}")
    durable, types, _, _ = _host.bindings()
    durable.log(_wit_level(levelno, types), str(message))


class DurableLogHandler(logging.Handler):
    """Sends each record, formatted, to the execution's durable log; a
    named logger's lines start with its name."""

    def emit(self, record):
        try:
            text = self.format(record)
            if record.name != "root":
                text = f"{record.name}: {text}"
            emit(record.levelno, text)
        except Exception:
            self.handleError(record)


def _record_without_clock(name, level, pathname, lineno, msg, args, exc_info, func=None, sinfo=None, **extra):
    """A `LogRecord` built without reading the clock.

    `logging.LogRecord` stamps every record with `time.time_ns()`, and in a
    workflow every clock read is a journaled event: a log line would cost
    a history entry. The host stamps log lines itself, so `created` is 0.
    """
    record = logging.LogRecord.__new__(logging.LogRecord)
    # The same special case as LogRecord: `log("%(a)s", {"a": 1})`.
    if args and len(args) == 1 and isinstance(args[0], dict) and args[0]:
        args = args[0]
    record.name = name
    record.msg = msg
    record.args = args
    record.levelname = logging.getLevelName(level)
    record.levelno = level
    record.pathname = pathname
    record.filename = pathname.rsplit("/", 1)[-1]
    record.module = record.filename.rsplit(".", 1)[0]
    record.exc_info = exc_info
    record.exc_text = None
    record.stack_info = sinfo
    record.lineno = lineno
    record.funcName = func
    record.created = 0.0
    record.msecs = 0.0
    record.relativeCreated = 0.0
    record.thread = threading.get_ident()
    record.threadName = "MainThread"
    record.processName = "MainProcess"
    record.process = None
    record.taskName = None
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def install():
    """Routes the root logger to the durable log, at INFO unless the
    workflow set a level itself. Called by `@workflow` before the workflow
    runs (never at import: componentize-py imports the module at build
    time, when there is no host to log to)."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.setLogRecordFactory(_record_without_clock)
    root = logging.getLogger()
    root.addHandler(DurableLogHandler())
    if root.level == logging.WARNING:
        root.setLevel(logging.INFO)


__all__ = ["DurableLogHandler", "install"]
