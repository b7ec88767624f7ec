"""Query and update latency through the API: account (Rust) with 0 and
1,000 answered updates in its history. Prints medians of N timed calls."""
import http.client, json, os, statistics, subprocess, sys, tempfile, time

BIN = os.environ["REPRISE_BIN"]
GUESTS = os.environ["REPRISE_GUESTS"]
MODULE = sys.argv[1] if len(sys.argv) > 1 else "account"
data = tempfile.mkdtemp()
os.makedirs(os.path.join(data, "activity"))
key = subprocess.check_output([BIN, "tenant", "create", "acme", "--limits", '{"requests_per_second": 100000}', "--data", data],
                              env={**os.environ, "REPRISE_LOG": "warn"}).decode().strip()
port = 18000 + os.getpid() % 1000
server = subprocess.Popen([BIN, "serve", "--data", data, "--listen", f"127.0.0.1:{port}", "--activity-dir", os.path.join(data, "activity")],
                          env={**os.environ, "REPRISE_LOG": "warn"}, stdout=subprocess.DEVNULL)
try:
    conn = None
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port); conn.request("GET", "/healthz"); conn.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    def call(method, path, body=None, raw=None):
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        conn.request(method, path, body=raw if raw is not None else (json.dumps(body) if body is not None else None), headers=headers)
        response = conn.getresponse(); text = response.read()
        return response.status, json.loads(text) if text else None
    status, module = call("POST", "/v1/modules", raw=open(os.path.join(GUESTS, f"{MODULE}.wasm"), "rb").read())
    assert status == 201, module
    assert call("PUT", "/v1/workflow-types/account", {"digest": module["digest"]})[0] == 200
    assert call("POST", "/v1/executions", {"workflow_type": "account", "workflow_id": "a", "input": {"owner": "ada"}})[0] == 201
    def timed(fn, n):
        samples = []
        for _ in range(n):
            started = time.perf_counter(); fn(); samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]
    def query():
        status, answer = call("POST", "/v1/executions/a/queries/balance", {"args": None}); assert status == 200, answer
    time.sleep(0.5)
    query()
    print(f"{MODULE}: query, empty history: p50 {timed(query, 50)[0]:.2f} ms")
    counter = [0]
    def update():
        counter[0] += 1
        status, answer = call("POST", "/v1/executions/a/updates/deposit", {"args": {"amount": 1}, "update_id": f"u{counter[0]}"})
        assert status == 200 and answer["status"] == "completed", answer
    p50, p99 = timed(update, 200)
    print(f"{MODULE}: update round trip (validate + deliver + answer), first 200: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    for _ in range(800):
        update()
    events = len(call("GET", "/v1/executions/a/history?limit=10000")[1]["events"])
    print(f"{MODULE}: query after 1,000 updates ({events} events): p50 {timed(query, 20)[0]:.2f} ms")
    p50, p99 = timed(update, 20)
    print(f"{MODULE}: update round trip after 1,000 updates: p50 {p50:.2f} ms")
finally:
    server.kill(); server.wait()
