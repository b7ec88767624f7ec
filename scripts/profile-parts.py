"""Splits `perf script -F comm,tid,ip,sym` samples into the parts of a
durable step: each sample goes to the first part (in the order below) that a
frame of its stack names. Compilation (once per process) is left out of the
shares."""

import re
import sys
from collections import Counter

# (part, pattern over the frames' symbols), most specific first.
PARTS = [
    ("compile (left out)", r"cranelift|wasmtime_cranelift|regalloc2"),
    ("store: SQLite (statements, WAL, fsync)", r"sqlite3|sqlx_sqlite|walChecksum|fdatasync|ext4_|jbd2"),
    ("store: batching, encoding events", r"reprise::store::"),
    ("activity: instantiate + run in Wasm", r"reprise::activity::wasm::Sandbox|wasmtime::runtime::component::instance::InstancePre"),
    ("activity: scheduling, retries, inbox", r"reprise::activity::"),
    ("workflow: instantiate", r"reprise::runtime::instantiate|Instance::new|instantiate_pre|InstancePre"),
    ("workflow: host calls (journal, recorder)", r"reprise::host::|reprise::journal::|reprise::execution::"),
    ("workflow: guest code and activation", r"reprise::runtime::activate|wasmtime::runtime::fiber|\.cwasm"),
    ("telemetry (spans, logs)", r"reprise::telemetry::|tracing|opentelemetry"),
    ("runtime: drive loop, quotas", r"reprise::runtime::|reprise::quota::"),
    ("memory: page faults, mmap/munmap", r"exc_page_fault|do_mmap|munmap|mprotect|smp_call_function"),
    ("API: HTTP, routing, handlers", r"hyper::|axum::|tower::|reprise::api::"),
    ("bench driver and tokio", r"tokio::|reprise::bench::"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in PARTS]


def samples(lines):
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            if stack:
                yield stack
            stack = []
        elif line.startswith(("\t", " ")):
            stack.append(line.strip())
        else:
            stack = []
    if stack:
        yield stack


counts = Counter()
for stack in samples(sys.stdin):
    text = "\n".join(stack)
    part = next((name for name, pattern in COMPILED if pattern.search(text)), "other (kernel, allocator, libc)")
    counts[part] += 1

counted = sum(n for part, n in counts.items() if not part.startswith("compile"))
print(f"{counted} samples outside compilation")
for part, n in counts.most_common():
    share = "" if part.startswith("compile") else f"{100 * n / counted:5.1f}%"
    print(f"  {share:>6}  {n:6}  {part}")
