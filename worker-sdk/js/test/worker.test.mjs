// The worker against a fake task API in this process: how outcomes are
// reported, reconnecting, stopping. runtime/tests/integration/workers.rs
// runs it against the real runtime. Run with `npm test` (after `npm run build`).

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { test } from "node:test";

import { ActivityError, NonRetryableError, TaskClosedError, Worker, WorkerError } from "../dist/index.js";

const DEADLINE_MS = 10_000;

/** Hands out queued tasks to polls and records every report. */
class FakeTaskApi {
  tasks = [];
  waiting = [];
  reports = [];
  polls = 0;
  pollStatus = 0;
  heartbeatStatus = 200;

  async start(port = 0) {
    this.server = createServer((request, response) => {
      let text = "";
      request.on("data", (chunk) => (text += chunk));
      request.on("end", () => this.handle(request.url, JSON.parse(text), response));
    });
    this.server.listen(port, "127.0.0.1");
    await once(this.server, "listening");
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async close() {
    this.server.closeAllConnections();
    this.server.close();
  }

  handle(path, body, response) {
    const answer = (status, value) => {
      const data = value === undefined ? "" : JSON.stringify(value);
      response.writeHead(status, { "content-length": Buffer.byteLength(data) }).end(data);
    };
    if (path === "/v1/activity-tasks/poll") {
      this.polls += 1;
      if (this.pollStatus) return answer(this.pollStatus, { error: "invalid API key" });
      if (this.tasks.length > 0) return answer(200, this.tasks.shift());
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== waiter);
        answer(204);
      }, body.wait_ms);
      const waiter = (task) => {
        clearTimeout(timer);
        answer(200, task);
      };
      response.on("close", () => {
        clearTimeout(timer);
        this.waiting = this.waiting.filter((w) => w !== waiter);
      });
      this.waiting.push(waiter);
      return;
    }
    const [, , , token, route] = path.split("/");
    this.reports.push({ token, route, body });
    if (route === "heartbeat" && this.heartbeatStatus !== 200) {
      return answer(this.heartbeatStatus, { error: "task is no longer open" });
    }
    answer(200, { ok: true });
  }

  add(activity, input, { attempt = 1, heartbeatDetails } = {}) {
    const token = `t${this.reports.length}-${activity}-${attempt}-${Math.random().toString(16).slice(2)}`;
    const task = {
      task_token: token,
      activity,
      input,
      idempotency_key: `key-${activity}`,
      attempt,
      workflow_id: "wf-1",
      run_id: "run-1",
      heartbeat_details: heartbeatDetails ?? null,
      start_to_close_timeout_ms: 5_000,
      traceparent: `00-${"1".repeat(32)}-${"2".repeat(16)}-01`,
    };
    const waiter = this.waiting.shift();
    if (waiter) waiter(task);
    else this.tasks.push(task);
    return token;
  }

  reportsFor(token) {
    return this.reports.filter((r) => r.token === token).map(({ route, body }) => [route, body]);
  }
}

async function eventually(condition, what) {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const quiet = { info() {}, warn() {}, error() {} };

/** Runs a worker for the length of `body`, then stops it and waits for run(). */
async function withWorker(api, options, body) {
  const lines = [];
  const logger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
  const worker = new Worker({ apiUrl: api.url, pollWaitMs: 200, handleSignals: false, logger, ...options });
  const running = worker.run();
  try {
    await body(worker, lines);
  } finally {
    worker.stop();
    await running;
  }
  return lines;
}

test("a handler gets its input and context, and its output is reported", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  let seen;
  const token = api.add("charge", { order_id: "42" }, { attempt: 2, heartbeatDetails: { step: 0 } });
  await withWorker(api, {
    activities: {
      charge: async (order, ctx) => {
        seen = [order, ctx.idempotencyKey, ctx.attempt, ctx.workflowId, ctx.runId, ctx.activityName, ctx.lastHeartbeatDetails];
        await ctx.heartbeat({ step: 1 });
        return { charge_id: "ch_1" };
      },
    },
  }, () => eventually(() => api.reportsFor(token).length === 2, "heartbeat and completion"));
  assert.deepEqual(seen, [{ order_id: "42" }, "key-charge", 2, "wf-1", "run-1", "charge", { step: 0 }]);
  assert.deepEqual(api.reportsFor(token), [
    ["heartbeat", { details: { step: 1 } }],
    ["complete", { output: { charge_id: "ch_1" } }],
  ]);
});

test("failures are typed; nothing returned completes with null", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  class CardExpired extends Error {}
  const activities = {
    typed: () => { throw new ActivityError("ProviderBusy", "try later", { details: { retry_in: 2 } }); },
    final: () => { throw new NonRetryableError("CardDeclined", "do not honour"); },
    uncaught: () => { throw new TypeError("no amount"); },
    classed: () => { throw new CardExpired("expired in 2020"); },
    "not-json": () => ({ big: 10n }),
    nothing: () => {},
  };
  const tokens = Object.fromEntries(Object.keys(activities).map((name) => [name, api.add(name, null)]));
  await withWorker(api, { activities }, () =>
    eventually(() => Object.values(tokens).every((token) => api.reportsFor(token).length > 0), "six reports"));
  const reported = Object.fromEntries(Object.entries(tokens).map(([name, token]) => [name, api.reportsFor(token)[0]]));
  assert.deepEqual(reported.typed, ["fail", {
    error_type: "ProviderBusy", message: "try later", non_retryable: false, details: { retry_in: 2 },
  }]);
  assert.deepEqual(reported.final, ["fail", { error_type: "CardDeclined", message: "do not honour", non_retryable: true }]);
  const [route, body] = reported.uncaught;
  assert.deepEqual([route, body.error_type, body.message, body.non_retryable], ["fail", "TypeError", "no amount", false]);
  assert.match(body.details.stack, /TypeError: no amount/);
  assert.equal(reported.classed[1].error_type, "CardExpired");
  assert.deepEqual([reported["not-json"][1].error_type, reported["not-json"][1].non_retryable], ["InvalidActivityOutput", true]);
  assert.deepEqual(reported.nothing, ["complete", { output: null }]);
});

test("a heartbeat for a closed task stops the handler, nothing is reported, the slot is freed", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  api.heartbeatStatus = 409;
  let sawClosed = false;
  const token = api.add("long", null);
  const after = api.add("echo", "next");
  await withWorker(api, {
    maxConcurrent: 1,
    activities: {
      long: async (_input, ctx) => {
        try {
          await ctx.heartbeat({ done: 1 });
        } catch (error) {
          sawClosed = error instanceof TaskClosedError && ctx.signal.aborted;
          throw error;
        }
        return "unreachable";
      },
      echo: (input) => input,
    },
  }, () => eventually(() => api.reportsFor(after).length > 0, "the next task"));
  assert.equal(sawClosed, true);
  assert.deepEqual(api.reportsFor(token).map(([route]) => route), ["heartbeat"]);
});

test("at most maxConcurrent handlers run at once, and no poll without a free slot", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  let release;
  const released = new Promise((resolve) => (release = resolve));
  let now = 0, most = 0, started = 0;
  const tokens = [0, 1, 2, 3, 4].map((n) => api.add("hold", n));
  await withWorker(api, {
    maxConcurrent: 2,
    activities: {
      hold: async () => {
        now += 1; started += 1; most = Math.max(most, now);
        await released;
        now -= 1;
      },
    },
  }, async () => {
    await eventually(() => started === 2, "two handlers started");
    const polls = api.polls;
    await new Promise((resolve) => setTimeout(resolve, 300)); // a broken limit would start a third now
    assert.equal(started, 2);
    assert.equal(api.polls, polls, "no poll without a free slot");
    release();
    await eventually(() => tokens.every((token) => api.reportsFor(token).length > 0), "all five reported");
  });
  assert.equal(most, 2);
});

test("stop() aborts the long poll at once and waits for the task in flight", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  let release;
  const released = new Promise((resolve) => (release = resolve));
  const token = api.add("hold", null);
  const worker = new Worker({
    apiUrl: api.url, pollWaitMs: 60_000, maxConcurrent: 2, handleSignals: false, logger: quiet,
    activities: { hold: async () => { await released; return "done"; } },
  });
  let returned = false;
  const running = worker.run().then(() => (returned = true));
  await eventually(() => api.polls === 2 && api.waiting.length === 1, "the task taken and a second poll waiting");
  worker.stop();
  await eventually(() => api.waiting.length === 0, "the long poll was aborted");
  assert.equal(returned, false, "run() waits for the task in flight");
  release();
  await running;
  assert.deepEqual(api.reportsFor(token), [["complete", { output: "done" }]]);
});

test("the worker reconnects when the task API comes back", async (t) => {
  // A port nobody listens on, until the fake API takes it.
  const probe = await new FakeTaskApi().start();
  const port = probe.server.address().port;
  await probe.close();
  const lines = [];
  const logger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
  const worker = new Worker({
    apiUrl: `http://127.0.0.1:${port}`, pollWaitMs: 200, handleSignals: false, logger,
    activities: { echo: (input) => input },
  });
  const running = worker.run();
  await eventually(() => lines.some((line) => line.includes("unreachable")), "logged the outage");
  const api = await new FakeTaskApi().start(port);
  t.after(() => api.close());
  const token = api.add("echo", "back");
  await eventually(() => api.reportsFor(token).length > 0, "the task after reconnecting");
  worker.stop();
  await running;
  assert.deepEqual(api.reportsFor(token), [["complete", { output: "back" }]]);
  assert.ok(lines.some((line) => line.includes("reachable again")), lines.join("\n"));
});

test("a refused API key ends run() with a clear error", async (t) => {
  const api = await new FakeTaskApi().start();
  t.after(() => api.close());
  api.pollStatus = 401;
  const worker = new Worker({ apiUrl: api.url, handleSignals: false, logger: quiet, activities: { echo: (x) => x } });
  await assert.rejects(worker.run(), (error) =>
    error instanceof WorkerError && error.message.includes("refused the API key: invalid API key"));
});

test("misconfiguration is refused up front", () => {
  const activities = { echo: (x) => x };
  assert.throws(() => new Worker({ apiUrl: "http://127.0.0.1:1", activities: {} }), /at least one handler/);
  assert.throws(() => new Worker({ apiUrl: "http://127.0.0.1:1", activities, maxConcurrent: 0 }),
    /maxConcurrent must be an integer of at least 1, got 0/);
  assert.throws(() => new Worker({ apiUrl: "http://127.0.0.1:1", activities, pollWaitMs: 90_000 }),
    /pollWaitMs must be between 0 and 60000, got 90000/);
  assert.throws(() => new Worker({ apiUrl: "127.0.0.1:7979", activities }), /apiUrl must be http/);
});
