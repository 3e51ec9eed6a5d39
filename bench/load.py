"""The timed load: load processes, each driving its share of the clients
from one thread (``loadgen``), started together once all are ready."""
from __future__ import annotations

import multiprocessing
import queue
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from .enrollment import (DIGEST_SLOT, basic_authorization, certificate_context, client_context, digest_preparer,
                         enroll_request, enrolled, make_csrs)
from .loadgen import ClientResult, run_clients
from .target import BenchError, LoadPlan

SPAWN = multiprocessing.get_context("spawn")
Message = tuple[str, int, Any]  # (kind: "ready", "done" or "error", load process, payload)


@dataclass
class WorkerResult:
    """What one load process measured."""

    clients: list[ClientResult]
    started: float  # time.monotonic(): one clock for every process on Linux
    finished: float
    cpu_seconds: float  # this load process's own CPU time during the load


def client_contexts(plan: LoadPlan, index: int, clients: int) -> list[ssl.SSLContext]:
    """One TLS context per client: shared for Basic, each with its own certificate for cert."""
    if plan.auth == "cert":
        return [certificate_context(plan.target, f"bench-client-{index}-{i}", plan.timeout) for i in range(clients)]
    return [client_context(plan.target.ca_file)] * clients


def load_worker(index: int, plan: LoadPlan, clients: int, messages: Queue[Message], go: Event) -> None:
    """One load process: make its CSRs (and certificates), say ready, wait for go, run its clients."""
    try:
        nodes = plan.target.nodes()
        t = nodes[index % len(nodes)]  # several nodes: each load process sends to one
        authorization = {"basic": basic_authorization(t.user, t.password), "digest": DIGEST_SLOT}.get(plan.auth)
        requests = [enroll_request(der, t.port, authorization, plan.new_connection)
                    for der in make_csrs(plan.csrs_per_process, f"bench-{index}")]
        contexts = client_contexts(plan, index, clients)
        prepare = [digest_preparer(t, plan.timeout) for _ in range(clients)] if plan.auth == "digest" else None
    except Exception as e:  # reported by the parent
        messages.put(("error", index, f"{type(e).__name__}: {e}"))
        return

    def ready() -> None:
        messages.put(("ready", index, None))
        go.wait()
    results = [ClientResult() for _ in range(clients)]
    cpu_start = time.process_time()
    started, finished = run_clients(contexts, results, requests, t.port, plan.new_connection, plan.timeout,
                                    enrolled, ready, plan.seconds, prepare)
    # The CPU of the pre-connect is outside the load: count from the start.
    messages.put(("done", index, WorkerResult(results, started, finished, time.process_time() - cpu_start)))


def split(total: int, parts: int) -> list[int]:
    """``total`` clients over ``parts`` processes, as evenly as can be."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def wait_for(messages: Queue[Message], kind: str, count: int, timeout: float, procs: list[SpawnProcess]) -> list[Any]:
    """Collect ``count`` messages of ``kind``; fail if a load process fails first."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        try:
            msg_kind, index, payload = messages.get(timeout=0.5)
            if msg_kind == "error":
                raise BenchError(f"load process {index}: {payload}")
            if msg_kind == kind:
                got.append(payload)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"a load process died (exit code {dead[0].exitcode})") from None
            if time.monotonic() > deadline:
                raise BenchError(f"load processes did not report '{kind}' in time") from None
    return got


def run_load(plan: LoadPlan, processes: int, on_go: Callable[[], None],
             on_done: Callable[[], None]) -> list[WorkerResult]:
    """Run the timed load; ``on_go`` is called right before it, ``on_done`` right after."""
    messages: Queue[Message] = SPAWN.Queue()
    go = SPAWN.Event()
    shares = [n for n in split(plan.clients, processes) if n]
    procs = [SPAWN.Process(target=load_worker, args=(i, plan, n, messages, go), daemon=True)
             for i, n in enumerate(shares)]
    for p in procs:
        p.start()
    try:
        wait_for(messages, "ready", len(procs), 300.0, procs)
        on_go()
        go.set()
        results: list[WorkerResult] = wait_for(messages, "done", len(procs), plan.seconds + plan.timeout + 30.0, procs)
        on_done()
        for p in procs:
            p.join()
        return results
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
