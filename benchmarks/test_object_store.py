"""What it costs to hand payloads to model workers through Ray's object store, on a fresh Ray and on
one that has carried as many bytes before: the streamed path's object task pays for each page of the
store it writes to for the first time (benchmarks/RESULTS.md, "The object store's first touch").

Each case is a Ray of its own (``address="local"``, in a subprocess, so that it is fresh whatever
Ray this session keeps): a zero-CPU task sends 72 payloads of 6 MiB (workload T's 436 MB) to two
actors, at most 4 outstanding, as the object task does, three times over. Reported per pass: the
sender's CPU seconds (user, system) and its minor page faults, and the actors' CPU seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PAYLOADS = 72
PAYLOAD_BYTES = 6 << 20
PASSES = 3
STORES = {"ray-default": None, "150MiB": 150 << 20}  # None: Ray sizes it (30 % of memory)

SCRIPT = """
import json, os, resource, sys
import ray

payloads, size, passes, store = json.loads(sys.argv[1])
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         object_store_memory=store)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


@ray.remote(num_cpus=1)
class Worker:
    def transform(self, body, name, index):
        return len(body)

    def cpu_s(self):
        return sum(cpu()[:2])


@ray.remote(num_cpus=0)
def send(workers):
    body = os.urandom(size)
    u0, s0, f0 = cpu()
    window, sent = [], 0
    for i in range(payloads):
        window.append(workers[i % len(workers)].transform.remote(body, "t.csv", i))
        if len(window) > 4:
            sent += ray.get(window.pop(0))
    sent += sum(ray.get(window))
    u1, s1, f1 = cpu()
    return {"bytes": sent, "user_s": u1 - u0, "system_s": s1 - s0, "minor_faults": f1 - f0}


workers = [Worker.remote(), Worker.remote()]
ray.get([w.cpu_s.remote() for w in workers])
rounds = []
for _ in range(passes):
    before = ray.get([w.cpu_s.remote() for w in workers])
    result = ray.get(send.remote(workers))
    after = ray.get([w.cpu_s.remote() for w in workers])
    result["workers_cpu_s"] = sum(after) - sum(before)
    rounds.append(result)
print("RESULT " + json.dumps(rounds))
"""


def run_passes(store: int | None) -> list[dict[str, float]]:
    args = json.dumps([PAYLOADS, PAYLOAD_BYTES, PASSES, store])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, args], capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-2000:]
    rounds: list[dict[str, float]] = json.loads(lines[-1][len("RESULT ") :])
    return rounds


@pytest.mark.parametrize("store", list(STORES))
def test_payloads_through_the_object_store(benchmark: Any, store: str) -> None:
    rounds = benchmark.pedantic(run_passes, args=(STORES[store],), rounds=1)
    for r in rounds:
        assert r["bytes"] == PAYLOADS * PAYLOAD_BYTES  # every payload reached a worker whole
        r["sender_cpu_s"] = round(r["user_s"] + r["system_s"], 2)
    benchmark.extra_info["passes"] = rounds
    print(f"\nobject store {store}, {PAYLOADS} x {PAYLOAD_BYTES} bytes, per pass: {json.dumps(rounds)}")
