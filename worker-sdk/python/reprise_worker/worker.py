"""`Worker`: polls the runtime for activity tasks, runs their handlers on
threads (at most `max_concurrent` at once) and reports each outcome."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import signal
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from ._task_api import TaskApi, TaskApiUnreachable
from .errors import ActivityError, TaskClosedError, WorkerError

logger = logging.getLogger("reprise_worker")

# The longest wait the runtime grants one poll (worker::POLL_WAIT_MAX).
POLL_WAIT_MS_MAX = 60_000
# The traceback in an error's details (`stack`) is cut to this many characters, so a
# deep stack does not push the report past the runtime's payload limit.
TRACEBACK_CHARS_MAX = 8_000
# Backoff between polls while the task API is unreachable.
RECONNECT_DELAY_S_MIN = 0.1
RECONNECT_DELAY_S_MAX = 5.0
# How long past its start-to-close timeout an outcome is still worth
# reporting (the runtime may be slow to retire the token).
REPORT_GRACE_S = 5.0

Handler = Callable[[Any, "ActivityContext"], Any]


class ActivityContext:
    """What a handler knows about its attempt, and its heartbeat.

    The idempotency key is the same for every attempt of one activity call
    (and across replays): pass it to whatever must not happen twice."""

    def __init__(self, task: dict, api: TaskApi):
        self.activity_name: str = task["activity"]
        self.idempotency_key: str = task["idempotency_key"]
        self.attempt: int = task["attempt"]
        self.workflow_id: str = task["workflow_id"]
        self.run_id: str = task["run_id"]
        self.task_token: str = task["task_token"]
        self.start_to_close_timeout_ms: int = task.get("start_to_close_timeout_ms", 0)
        # The attempt's W3C trace context, to pass on to what it calls.
        self.traceparent: str = task.get("traceparent", "")
        # Details of the last heartbeat of an earlier attempt (decoded JSON),
        # to resume from where it got; None on a first attempt.
        self.last_heartbeat_details: Any = task.get("heartbeat_details")
        self._api = api

    def heartbeat(self, details: Any = None) -> None:
        """Tells the runtime the attempt is alive, with optional progress
        `details` (JSON-able) that a retry gets as `last_heartbeat_details`.

        Raises `TaskClosedError` when the runtime no longer waits for this
        attempt (it timed out, or the workflow stopped waiting). When the
        task API cannot be reached it logs and returns: the runtime's
        heartbeat timeout decides."""
        body = {} if details is None else {"details": details}
        try:
            status, answer = self._api.report(self.task_token, "heartbeat", body)
        except TaskApiUnreachable as error:
            logger.warning("%s: heartbeat not delivered (%s)", self._describe(), error)
            return
        if status in (404, 409):
            raise TaskClosedError(f"{self._describe()}: {_error_text(answer, status)}")
        if status != 200:
            logger.warning(
                "%s: heartbeat refused: %s", self._describe(), _error_text(answer, status)
            )

    def _describe(self) -> str:
        return f"{self.activity_name} attempt {self.attempt} of workflow {self.workflow_id}"


class Worker:
    """Serves `activities` (name -> handler) from the task API at `api_url`.

        Worker("http://127.0.0.1:7979", activities={"charge": charge}, max_concurrent=4).run()

    A handler is `handler(input, ctx)` (or `async def`); it gets the decoded
    JSON input and an `ActivityContext`, and returns a JSON-able output. To
    fail, it raises `ActivityError` / `NonRetryableError` (typed) or any
    other exception (retryable, typed by the exception's class name).

    `run()` blocks until `stop()` or SIGTERM/SIGINT: then it stops polling,
    lets the tasks in flight finish and report, and returns. A second
    signal exits at once (those tasks' attempts time out and are retried).

    `api_key` (default: the REPRISE_API_KEY environment variable) is the
    tenant's key on a multi-tenant server. `poll_wait_ms` is how long one
    poll waits for a task (at most 60 000).
    """

    def __init__(
        self,
        api_url: str,
        api_key: Optional[str] = None,
        activities: Optional[Dict[str, Handler]] = None,
        max_concurrent: int = 10,
        poll_wait_ms: int = 30_000,
    ):
        if not activities:
            raise ValueError("activities must name at least one handler: {'charge': charge}")
        for name, handler in activities.items():
            if not callable(handler):
                raise ValueError(f"the handler for activity {name!r} is not callable")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if not 0 <= poll_wait_ms <= POLL_WAIT_MS_MAX:
            raise ValueError(
                f"poll_wait_ms must be between 0 and {POLL_WAIT_MS_MAX}, got {poll_wait_ms}"
            )
        if api_key is None:
            api_key = os.environ.get("REPRISE_API_KEY") or None
        self.activities = dict(activities)
        self.max_concurrent = max_concurrent
        self.poll_wait_ms = poll_wait_ms
        self._api = TaskApi(api_url, api_key)
        self._stopping = threading.Event()
        # Guards `_in_flight`; the poller waits on it for a free slot.
        self._slots = threading.Condition()
        self._in_flight: List[threading.Thread] = []
        self._fatal: Optional[WorkerError] = None

    # -- running and stopping ---------------------------------------------

    def run(self, install_signal_handlers: bool = True) -> None:
        """Polls and runs tasks until stopped, then waits for the tasks in
        flight to finish and report. Raises `WorkerError` if the task API
        refuses the worker for good (bad key, not a task API)."""
        _log_to_stderr_unless_configured()
        previous = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        logger.info(
            "polling %s for %s (up to %d at once)",
            self._api.url,
            ", ".join(sorted(self.activities)),
            self.max_concurrent,
        )
        # The main thread only waits here, so a signal handler never finds
        # a lock it needs held by the thread it interrupted.
        poller = threading.Thread(target=self._poll_then_drain, name="reprise-worker-poller")
        poller.start()
        try:
            poller.join()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._fatal is not None:
            raise self._fatal
        logger.info("stopped")

    def stop(self) -> None:
        """Stops polling (ending the poll in flight) and lets `run()` return
        once the tasks in flight have finished and reported. Safe to call
        from any thread, more than once."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._api.abort_poll()
        with self._slots:
            in_flight = len(self._in_flight)
            self._slots.notify_all()
        logger.info(
            "stopping: no more polls; waiting for %d task%s in flight",
            in_flight,
            "" if in_flight == 1 else "s",
        )

    def _on_signal(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            with self._slots:
                in_flight = len(self._in_flight)
            logger.warning(
                "second %s: exiting now without waiting for %d task%s in flight "
                "(their attempts time out and are retried)",
                name,
                in_flight,
                "" if in_flight == 1 else "s",
            )
            os._exit(128 + signum)
        logger.info("%s received", name)
        self.stop()

    def _poll_then_drain(self) -> None:
        try:
            self._poll_loop()
        except WorkerError as error:
            self._fatal = error
            logger.error("%s", error)
            self._stopping.set()
        finally:
            with self._slots:
                tasks = list(self._in_flight)
            for task in tasks:
                task.join()

    def _poll_loop(self) -> None:
        names = sorted(self.activities)
        delay_s = RECONNECT_DELAY_S_MIN
        failed_polls = 0
        while not self._stopping.is_set():
            # Poll only with a free slot: a task taken without one would
            # wait here while its start-to-close timeout runs.
            with self._slots:
                while len(self._in_flight) >= self.max_concurrent and not self._stopping.is_set():
                    self._slots.wait()
            if self._stopping.is_set():
                return
            try:
                status, task = self._api.poll(names, self.poll_wait_ms)
            except TaskApiUnreachable as error:
                if self._stopping.is_set():
                    return
                failed_polls += 1
                if failed_polls == 1:
                    logger.warning(
                        "task API %s unreachable (%s); retrying with backoff", self._api.url, error
                    )
                self._stopping.wait(_jittered(delay_s))
                delay_s = min(delay_s * 2, RECONNECT_DELAY_S_MAX)
                continue
            if failed_polls:
                logger.info(
                    "task API %s reachable again after %d failed poll%s",
                    self._api.url,
                    failed_polls,
                    "" if failed_polls == 1 else "s",
                )
                failed_polls = 0
            delay_s = RECONNECT_DELAY_S_MIN
            if status == 204:
                continue
            if status == 200 and isinstance(task, dict):
                # A task that arrives as the worker stops is run all the
                # same: it is leased to this worker now.
                self._start(task)
                continue
            self._on_poll_refused(status, task)
            self._stopping.wait(_jittered(delay_s))

    def _on_poll_refused(self, status: int, answer: Any) -> None:
        problem = _error_text(answer, status)
        if status in (401, 403):
            raise WorkerError(f"the task API {self._api.url} refused the API key: {problem}")
        if status in (400, 404, 405):
            raise WorkerError(
                f"the task API {self._api.url} refused the poll ({status}: {problem}); "
                "is this a Reprise worker API (reprise serve --worker-api)?"
            )
        # 429, 5xx: the server is busy or unwell; try again after a pause.
        logger.warning("poll refused with %d: %s; retrying", status, problem)

    def _start(self, task: dict) -> None:
        thread = threading.Thread(
            target=self._run_task,
            args=(task,),
            name=f"reprise-task-{task.get('activity')}-{task.get('attempt')}",
        )
        with self._slots:
            self._in_flight.append(thread)
        thread.start()

    # -- one task ---------------------------------------------------------

    def _run_task(self, task: dict) -> None:
        try:
            self._execute(task)
        except Exception:  # a bug here must not take the slot with it
            logger.exception("task %s: unexpected error in the worker", task.get("task_token"))
        finally:
            with self._slots:
                self._in_flight.remove(threading.current_thread())
                self._slots.notify_all()

    def _execute(self, task: dict) -> None:
        ctx = ActivityContext(task, self._api)
        what = ctx._describe()
        handler = self.activities.get(ctx.activity_name)
        deadline = time.monotonic() + ctx.start_to_close_timeout_ms / 1000 + REPORT_GRACE_S
        if handler is None:
            # Only names it polled for reach it; the runtime sent another.
            self._report_failure(ctx, deadline, ActivityError(
                "UnknownActivity", f"this worker serves no activity named {ctx.activity_name!r}"
            ))
            return
        logger.info("%s (key %s): started", what, ctx.idempotency_key)
        started = time.monotonic()
        try:
            output = _call(handler, task.get("input"), ctx)
        except TaskClosedError as error:
            logger.warning("%s: stopped, the runtime no longer waits for it (%s)", what, error)
            return
        except ActivityError as error:
            self._report_failure(ctx, deadline, error, started)
            return
        except Exception as error:  # any other failure: retryable, named by its class
            details = {"stack": traceback.format_exc()[-TRACEBACK_CHARS_MAX:]}
            message = str(error) or repr(error)
            self._report_failure(
                ctx,
                deadline,
                ActivityError(type(error).__name__, message, details),
                started,
                uncaught=True,
            )
            return
        try:
            json.dumps(output, allow_nan=False)
        except (TypeError, ValueError) as error:
            self._report_failure(ctx, deadline, ActivityError(
                "InvalidActivityOutput",
                f"the handler returned a value that is not JSON: {error}",
                non_retryable=True,
            ), started)
            return
        status, answer = self._report(ctx, deadline, "complete", {"output": output})
        if status == 400:
            # Over the payload limit, say: the attempt fails instead.
            self._report_failure(ctx, deadline, ActivityError(
                "InvalidActivityOutput", _error_text(answer, status), non_retryable=True
            ), started)
            return
        if status == 200:
            logger.info("%s: completed in %d ms", what, _elapsed_ms(started))

    def _report_failure(
        self,
        ctx: ActivityContext,
        deadline: float,
        error: ActivityError,
        started: Optional[float] = None,
        uncaught: bool = False,
    ) -> None:
        body = {
            "error_type": error.error_type,
            "message": error.message,
            "non_retryable": bool(error.non_retryable),
        }
        if error.details is not None:
            try:
                json.dumps(error.details, allow_nan=False)
                body["details"] = error.details
            except (TypeError, ValueError):
                body["details"] = {"repr": repr(error.details)[:TRACEBACK_CHARS_MAX]}
        status, answer = self._report(ctx, deadline, "fail", body)
        if status == 200:
            logger.info(
                "%s: failed with %s (%s)%s: %s",
                ctx._describe(),
                error.error_type,
                "non-retryable" if error.non_retryable else "retryable",
                "" if started is None else f" after {_elapsed_ms(started)} ms",
                error.message,
                # An exception nobody typed is often a bug: show where.
                exc_info=uncaught,
            )
        elif status == 400:
            logger.error("%s: failure report refused: %s", ctx._describe(), _error_text(answer, status))

    def _report(self, ctx: ActivityContext, deadline: float, route: str, body: dict):
        """Sends an outcome, retrying while the task API is unreachable and
        the runtime may still wait for it. Returns (status, answer); status
        0 when it never got through."""
        delay_s = RECONNECT_DELAY_S_MIN
        while True:
            try:
                status, answer = self._api.report(ctx.task_token, route, body)
            except TaskApiUnreachable as error:
                status, answer = 0, {"error": str(error)}
            if status in (404, 409):
                logger.warning(
                    "%s: the runtime refused the outcome: %s",
                    ctx._describe(),
                    _error_text(answer, status),
                )
                return status, answer
            if status != 0 and status != 429 and status < 500:
                return status, answer
            if time.monotonic() + delay_s >= deadline:
                logger.error(
                    "%s: outcome not reported (%s); the attempt times out and is retried",
                    ctx._describe(),
                    _error_text(answer, status),
                )
                return 0, answer
            logger.warning(
                "%s: reporting failed (%s); retrying in %.1f s",
                ctx._describe(),
                _error_text(answer, status),
                delay_s,
            )
            time.sleep(_jittered(delay_s))
            delay_s = min(delay_s * 2, RECONNECT_DELAY_S_MAX)


def _call(handler: Handler, payload: Any, ctx: ActivityContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return asyncio.run(handler(payload, ctx))
    result = handler(payload, ctx)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable):
    return await awaitable


def _error_text(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return answer["error"]
    return f"HTTP {status}" if status else "no answer"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _jittered(delay_s: float) -> float:
    """±20%, so many workers that lost the server do not return in step."""
    return delay_s * random.uniform(0.8, 1.2)


def _log_to_stderr_unless_configured() -> None:
    """Without any logging set up, INFO lines would be dropped: a worker's
    log is how an operator sees what it did, so give it one."""
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s reprise_worker: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
