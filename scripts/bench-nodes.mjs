// The peer workload (../shared/peers: W1 = 500 chain10 workflows started at
// once, W2 = 100 sequential one-step workflows) against one SQLite server,
// or against NODES servers sharing one PostgreSQL database, through the
// HTTP API with start-and-wait. W1's starts go round-robin over the nodes;
// W2 goes to the first node.
//
//   REPRISE_BIN=target/release/reprise REPRISE_GUESTS=build/guests \
//     node scripts/bench-nodes.mjs sqlite|postgres [NODES]
//
// PostgreSQL: a fresh database is created (and dropped) on the server
// REPRISE_BENCH_POSTGRES names (default postgres://postgres@127.0.0.1:5432/postgres),
// with psql. Prints one RESULT line; CPU seconds are the servers' during W1
// (and, for PostgreSQL, every `postgres` process's on the machine).
// REPRISE_TENANT_LIMITS (a JSON object) adds to the bench tenant's limits,
// e.g. '{"instances_max": 64}'.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN = process.env.REPRISE_BIN;
const GUESTS = process.env.REPRISE_GUESTS;
if (!BIN || !GUESTS) throw new Error("set REPRISE_BIN and REPRISE_GUESTS");
const backend = process.argv[2] || "sqlite";
const nodeCount = Number(process.argv[3] || 1);
if (backend === "sqlite" && nodeCount !== 1) throw new Error("SQLite takes one node");
const N = Number(process.env.N || 500);
const LAT = Number(process.env.LAT_N || 100);
const ADMIN_URL = process.env.REPRISE_BENCH_POSTGRES || "postgres://postgres@127.0.0.1:5432/postgres";
const TENANT_LIMITS = parseTenantLimits(process.env.REPRISE_TENANT_LIMITS || "{}");
function parseTenantLimits(text) {
  let limits;
  try {
    limits = JSON.parse(text);
  } catch (error) {
    throw new Error(`REPRISE_TENANT_LIMITS is not JSON (${error.message}); give an object such as '{"instances_max": 64}'`);
  }
  // A number or an array would spread into nothing or into index keys.
  if (limits === null || typeof limits !== "object" || Array.isArray(limits)) {
    throw new Error(`REPRISE_TENANT_LIMITS must be a JSON object such as '{"instances_max": 64}', not ${text}`);
  }
  return limits;
}
const ADMIN_KEY = "bench-admin-key-0123456789abcdef0123456789abcdef";

const work = mkdtempSync(join(tmpdir(), "reprise-bench-nodes-"));
writeFileSync(join(work, "admin.key"), ADMIN_KEY);
const database = `reprise_bench_${process.pid}`;
const databaseUrl = ADMIN_URL.replace(/\/[^/]*$/, `/${database}`);
const psql = (sql) => execFileSync("psql", [ADMIN_URL, "-qAt", "-c", sql], { encoding: "utf8" });

function cpuSeconds(pids) {
  const hz = 100; // USER_HZ on Linux
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* gone */ }
  }
  return ticks / hz;
}
const postgresPids = () =>
  readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres"; } catch { return false; }
  });

async function call(base, method, path, body, key, raw) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": raw ? "application/wasm" : "application/json",
    },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

async function ready(base) {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(`${base}/readyz`)).ok) return; } catch { /* not yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${base} never became ready`);
}

const servers = [];
try {
  if (backend === "postgres") psql(`CREATE DATABASE ${database}`);
  for (let index = 0; index < nodeCount; index++) {
    const data = join(work, `node-${index}`);
    mkdirSync(data);
    const port = 19100 + (process.pid % 500) + index;
    const args = ["serve", "--data", data, "--listen", `127.0.0.1:${port}`,
      "--admin-key-file", join(work, "admin.key"),
      "--activities", join(GUESTS, "hello-activities.wasm")];
    if (backend === "postgres") args.push("--database", databaseUrl);
    const child = spawn(BIN, args, { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, REPRISE_LOG: "warn" } });
    servers.push({ child, base: `http://127.0.0.1:${port}` });
    // One at a time: the first migrates the database.
    await ready(servers[index].base);
  }
  const first = servers[0].base;
  const { api_key: key } = await call(first, "POST", "/v1/admin/tenants",
    { name: "bench", limits: { requests_per_second: 1000000, ...TENANT_LIMITS } }, ADMIN_KEY);
  const module = await call(first, "POST", "/v1/modules", undefined, key, readFileSync(join(GUESTS, "bench.wasm")));
  await call(first, "PUT", "/v1/workflow-types/bench", { digest: module.digest }, key);

  const run = async (base, id, steps) => {
    let execution = await call(base, "POST", "/v1/executions",
      { workflow_type: "bench", workflow_id: id, input: { steps }, wait_ms: 60000 }, key);
    while (execution.status === "running") {
      execution = await call(base, "GET", `/v1/executions/${id}?wait_ms=60000`, undefined, key);
    }
    return execution.status === "completed" && execution.result === steps;
  };

  const pids = servers.map((server) => server.child.pid);
  const pgPids = backend === "postgres" ? postgresPids() : [];
  const cpu0 = cpuSeconds(pids), pg0 = cpuSeconds(pgPids);
  const t0 = performance.now();
  const w1 = await Promise.all(Array.from({ length: N }, (_, i) =>
    run(servers[i % nodeCount].base, `chain10-${i}`, 10).catch((error) => { console.error(error.message); return false; })));
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pids) - cpu0, pgCpu = cpuSeconds(pgPids) - pg0;
  const latencies = [];
  let w2ok = 0;
  for (let i = 0; i < LAT; i++) {
    const t = performance.now();
    if (await run(first, `one-${i}`, 1)) w2ok++;
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.max(0, Math.ceil((p / 100) * latencies.length) - 1)].toFixed(2);
  const rss = pids.map((pid) => {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
    return (Number(line.split(/\s+/)[1]) / 1024).toFixed(0);
  });
  console.log(`RESULT backend=${backend} nodes=${nodeCount} w1_ok=${w1.filter(Boolean).length}/${N} ` +
    `w1_wall_s=${wall.toFixed(3)} w1_steps_per_s=${((N * 10) / wall).toFixed(0)} ` +
    `w1_cpu_s_servers=${cpu.toFixed(2)} w1_cpu_s_postgres=${pgCpu.toFixed(2)} ` +
    `w2_ok=${w2ok}/${LAT} w2_p50_ms=${pct(50)} w2_p99_ms=${pct(99)} peak_rss_mib=${rss.join("+")}`);
} finally {
  for (const { child } of servers) child.kill("SIGTERM");
  await Promise.all(servers.map(({ child }) => new Promise((resolve) =>
    child.exitCode !== null ? resolve() : child.on("exit", resolve))));
  if (backend === "postgres") {
    try { psql(`DROP DATABASE IF EXISTS ${database}`); } catch (error) { console.error(error.message); }
  }
  rmSync(work, { recursive: true, force: true });
}
