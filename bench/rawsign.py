"""The token's raw sign rate with the CA key, through ``estappliance.token``
(the key object the CA signs with), in separate processes: one, then one
per server worker at once (what N workers, one PKCS#11 thread each, could reach)."""
from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from estappliance.config import load
from estappliance.token import Token, signature_hash, token_private_key

from .target import BenchError, Target

SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class RawSign:
    one: float | None  # signs/s, one process
    parallel: float | None  # one process per server worker, at once
    processes: int


def ca_signature(config_path: Path) -> Callable[[], bytes]:
    """One signature as the CA makes them: ECDSA over a host-side digest
    (CKM_ECDSA), or RSA PKCS#1 v1.5 (CKM_SHA256_RSA_PKCS)."""
    config = load(config_path)
    token = Token(config.token.module, config.token.label, config.token.read_pin, config.token.softhsm2_conf)
    key = token_private_key(token, config.ca.key_label)
    algorithm = signature_hash(key.public_key())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest, ecdsa = os.urandom(algorithm.digest_size), ec.ECDSA(utils.Prehashed(algorithm))
        return lambda: key.sign(digest, ecdsa)
    if isinstance(key, rsa.RSAPrivateKey):
        data, pkcs1 = os.urandom(32), padding.PKCS1v15()
        return lambda: key.sign(data, pkcs1, algorithm)
    raise BenchError(f"the CA key is neither EC nor RSA: {type(key).__name__}")


def raw_sign_process(config_path: Path, seconds: float, ready: Barrier,
                     results: Queue[tuple[float | None, str | None]]) -> None:
    """One signing process: open the token, wait for the others, sign for ``seconds``."""
    try:
        sign = ca_signature(config_path)
        sign()  # the session is open and the key found before the clock starts
        ready.wait(timeout=60)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            sign()
            count += 1
        results.put((count / elapsed, None))
    except Exception as e:  # reported by the parent
        ready.abort()
        results.put((None, f"{type(e).__name__}: {e}"))


def measure_raw_sign(config_path: Path, seconds: float, processes: int) -> float:
    """Signs per second with the CA key, ``processes`` processes at once (one thread each)."""
    ready, results = SPAWN.Barrier(processes), SPAWN.Queue()
    procs = [SPAWN.Process(target=raw_sign_process, args=(config_path, seconds, ready, results), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        answers = [results.get(timeout=seconds + 90) for _ in procs]
    except queue.Empty:
        raise BenchError("the raw sign processes did not answer") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    errors = [e for _, e in answers if e]
    if errors:
        raise BenchError(errors[0])
    return sum(rate or 0.0 for rate, _ in answers)


def raw_sign_figures(target: Target, seconds: float) -> RawSign:
    """Measure and print; one retry, then the load goes on without the figure."""
    workers = target.workers
    for attempt in (1, 2):
        try:
            one = measure_raw_sign(target.config, seconds, 1)
            parallel = measure_raw_sign(target.config, seconds, workers) if workers > 1 else one
            break
        except Exception as e:
            print(f"token raw sign: {'not measured' if attempt == 2 else 'failed, once more'} "
                  f"({type(e).__name__}: {e})", flush=True)
    else:
        return RawSign(None, None, workers)
    print(f"token raw sign: {one:.0f}/s ({target.key_type}, 1 process)"
          + (f", {parallel:.0f}/s with {workers} processes in parallel" if workers > 1 else ""), flush=True)
    return RawSign(one, parallel, workers)
