"""The worker against a fake task API in this process: how outcomes are
reported, reconnecting, stopping. The integration tests
(runtime/tests/integration/workers.rs) run it against the real runtime."""

import json
import queue
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reprise_worker import ActivityError, NonRetryableError, TaskClosedError, Worker, WorkerError

DEADLINE_S = 10


class FakeTaskApi:
    """Hands out queued tasks to polls and records every report."""

    def __init__(self, port=0, poll_status=None, heartbeat_status=200):
        self.tasks = queue.Queue()
        self.reports = []
        self.polls = 0
        self.poll_status = poll_status
        self.heartbeat_status = heartbeat_status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/activity-tasks/poll":
                    fake.polls += 1
                    if fake.poll_status:
                        return self.answer(fake.poll_status, {"error": "invalid API key"})
                    try:
                        task = fake.tasks.get(timeout=body["wait_ms"] / 1000)
                    except queue.Empty:
                        return self.answer(204, None)
                    return self.answer(200, task)
                _, _, _, token, route = self.path.split("/")
                fake.reports.append((token, route, body))
                if route == "heartbeat" and fake.heartbeat_status != 200:
                    return self.answer(fake.heartbeat_status, {"error": "task is no longer open"})
                self.answer(200, {"ok": True})

            def answer(self, status, body):
                data = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker hung up (an aborted poll)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def add(self, activity, payload, attempt=1, token=None, heartbeat_details=None):
        token = token or f"t{self.tasks.qsize()}-{activity}-{attempt}"
        self.tasks.put({
            "task_token": token,
            "activity": activity,
            "input": payload,
            "idempotency_key": f"key-{activity}",
            "attempt": attempt,
            "workflow_id": "wf-1",
            "run_id": "run-1",
            "heartbeat_details": heartbeat_details,
            "start_to_close_timeout_ms": 5_000,
            "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        })
        return token

    def reports_for(self, token):
        return [(route, body) for (t, route, body) in self.reports if t == token]


def eventually(condition, what):
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE_S} s")
        time.sleep(0.01)


class Running:
    """A worker running on a thread for the length of a `with` block."""

    def __init__(self, worker):
        self.worker = worker
        self.error = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            self.worker.run(install_signal_handlers=False)
        except Exception as error:  # checked by the test
            self.error = error

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), "the worker did not stop"


class WorkerTest(unittest.TestCase):
    def setUp(self):
        self.api = FakeTaskApi()
        self.addCleanup(self.api.close)

    def worker(self, activities, **options):
        options.setdefault("poll_wait_ms", 200)
        return Worker(self.api.url, activities=activities, **options)

    def test_a_handler_gets_input_and_context_and_its_output_is_reported(self):
        seen = {}

        def charge(order, ctx):
            seen.update(
                order=order, key=ctx.idempotency_key, attempt=ctx.attempt, workflow=ctx.workflow_id,
                run=ctx.run_id, name=ctx.activity_name, resumed=ctx.last_heartbeat_details,
            )
            ctx.heartbeat({"step": 1})
            return {"charge_id": "ch_1", "amount": 10**30}

        token = self.api.add("charge", {"order_id": "42"}, attempt=2, heartbeat_details={"step": 0})
        with Running(self.worker({"charge": charge})):
            eventually(lambda: len(self.api.reports_for(token)) == 2, "heartbeat and completion")
        self.assertEqual(seen, {
            "order": {"order_id": "42"}, "key": "key-charge", "attempt": 2, "workflow": "wf-1",
            "run": "run-1", "name": "charge", "resumed": {"step": 0},
        })
        self.assertEqual(self.api.reports_for(token), [
            ("heartbeat", {"details": {"step": 1}}),
            ("complete", {"output": {"charge_id": "ch_1", "amount": 10**30}}),
        ])

    def test_failures_are_typed(self):
        def typed(_, ctx):
            raise ActivityError("ProviderBusy", "try later", {"retry_in": 2})

        def final(_, ctx):
            raise NonRetryableError("CardDeclined", "do not honour")

        def uncaught(_, ctx):
            raise ValueError("no amount")

        def not_json(_, ctx):
            return {"when": object()}

        activities = {"typed": typed, "final": final, "uncaught": uncaught, "not-json": not_json}
        tokens = {name: self.api.add(name, None) for name in activities}
        with Running(self.worker(activities)):
            eventually(lambda: all(self.api.reports_for(t) for t in tokens.values()), "four reports")
        reported = {name: self.api.reports_for(token)[0] for name, token in tokens.items()}
        self.assertEqual(reported["typed"], ("fail", {
            "error_type": "ProviderBusy", "message": "try later", "non_retryable": False,
            "details": {"retry_in": 2},
        }))
        self.assertEqual(reported["final"], ("fail", {
            "error_type": "CardDeclined", "message": "do not honour", "non_retryable": True,
        }))
        route, body = reported["uncaught"]
        self.assertEqual((route, body["error_type"], body["message"], body["non_retryable"]),
                         ("fail", "ValueError", "no amount", False))
        self.assertIn("ValueError: no amount", body["details"]["stack"])
        route, body = reported["not-json"]
        self.assertEqual((route, body["error_type"], body["non_retryable"]),
                         ("fail", "InvalidActivityOutput", True))

    def test_async_handlers_run_too(self):
        async def add_one(number, ctx):
            return number + 1

        token = self.api.add("add-one", 41)
        with Running(self.worker({"add-one": add_one})):
            eventually(lambda: self.api.reports_for(token), "completion")
        self.assertEqual(self.api.reports_for(token), [("complete", {"output": 42})])

    def test_a_heartbeat_for_a_closed_task_stops_the_handler_and_nothing_is_reported(self):
        self.api.heartbeat_status = 409
        stopped = threading.Event()

        def long(_, ctx):
            try:
                ctx.heartbeat({"done": 1})
            except TaskClosedError:
                stopped.set()
                raise
            return "unreachable"

        token = self.api.add("long", None)
        after = self.api.add("echo", "next")
        activities = {"long": long, "echo": lambda x, ctx: x}
        with Running(self.worker(activities, max_concurrent=1)):
            eventually(stopped.is_set, "the handler saw the task closed")
            # Its slot is free again: the next task runs.
            eventually(lambda: self.api.reports_for(after), "the next task")
        self.assertEqual([route for route, _ in self.api.reports_for(token)], ["heartbeat"])

    def test_at_most_max_concurrent_handlers_run_at_once(self):
        release = threading.Event()
        lock = threading.Lock()
        counts = {"now": 0, "most": 0, "started": 0}

        def hold(_, ctx):
            with lock:
                counts["now"] += 1
                counts["started"] += 1
                counts["most"] = max(counts["most"], counts["now"])
            release.wait(DEADLINE_S)
            with lock:
                counts["now"] -= 1

        tokens = [self.api.add("hold", n) for n in range(5)]
        with Running(self.worker({"hold": hold}, max_concurrent=2)):
            eventually(lambda: counts["started"] == 2, "two handlers started")
            polls = self.api.polls
            time.sleep(0.3)  # a broken limit would start a third one now
            self.assertEqual(counts["started"], 2)
            self.assertEqual(self.api.polls, polls, "no poll without a free slot")
            release.set()
            eventually(lambda: all(self.api.reports_for(t) for t in tokens), "all five reported")
        self.assertEqual(counts["most"], 2)

    def test_stop_ends_a_long_poll_at_once_and_waits_for_tasks_in_flight(self):
        release = threading.Event()
        finished = []

        def hold(_, ctx):
            release.wait(DEADLINE_S)
            finished.append(ctx.task_token)
            return "done"

        token = self.api.add("hold", None)
        worker = self.worker({"hold": hold}, poll_wait_ms=60_000, max_concurrent=2)
        running = Running(worker).__enter__()
        eventually(lambda: self.api.polls == 2, "the task taken and a second poll waiting")
        worker.stop()
        time.sleep(0.2)
        self.assertTrue(running.thread.is_alive(), "run() waits for the task in flight")
        release.set()
        running.thread.join(DEADLINE_S)
        self.assertFalse(running.thread.is_alive(), "run() returned without waiting out the poll")
        self.assertEqual(finished, [token])
        self.assertEqual(self.api.reports_for(token), [("complete", {"output": "done"})])

    def test_the_worker_reconnects_when_the_task_api_comes_back(self):
        # A port nobody listens on, until the fake API takes it.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        worker = Worker(f"http://127.0.0.1:{port}", activities={"echo": lambda x, ctx: x},
                        poll_wait_ms=200)
        with self.assertLogs("reprise_worker", level="INFO") as logs, Running(worker):
            eventually(lambda: any("unreachable" in line for line in logs.output), "logged the outage")
            api = FakeTaskApi(port=port)
            self.addCleanup(api.close)
            token = api.add("echo", "back")
            eventually(lambda: api.reports_for(token), "the task after reconnecting")
        self.assertEqual(api.reports_for(token), [("complete", {"output": "back"})])
        self.assertTrue(any("reachable again" in line for line in logs.output), logs.output)

    def test_a_refused_api_key_ends_run_with_a_clear_error(self):
        self.api.poll_status = 401
        running = Running(self.worker({"echo": lambda x, ctx: x}))
        with running:
            running.thread.join(DEADLINE_S)
        self.assertIsInstance(running.error, WorkerError)
        self.assertIn("refused the API key: invalid API key", str(running.error))

    def test_misconfiguration_is_refused_up_front(self):
        with self.assertRaisesRegex(ValueError, "at least one handler"):
            Worker(self.api.url, activities={})
        with self.assertRaisesRegex(ValueError, "max_concurrent must be at least 1, got 0"):
            Worker(self.api.url, activities={"a": print}, max_concurrent=0)
        with self.assertRaisesRegex(ValueError, "poll_wait_ms must be between 0 and 60000, got 90000"):
            Worker(self.api.url, activities={"a": print}, poll_wait_ms=90_000)
        with self.assertRaisesRegex(ValueError, "api_url must be http"):
            Worker("127.0.0.1:7979", activities={"a": print})


if __name__ == "__main__":
    unittest.main()
