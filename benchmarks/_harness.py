"""Shared helpers for the benchmark modules (not a benchmark itself).

* :func:`machine_info` — CPU model, cores, memory, library versions, load, date, git commit;
* :func:`run_case` — run one benchmark case in a fresh Python subprocess and return its
  JSON result, including the process's peak resident memory (``ru_maxrss``) and its CPU
  time (so the number of cores a peer really used is visible);
* :func:`child_main` — the subprocess side: ``python bench_x.py --case NAME --kwargs JSON``;
* :func:`timed` / :func:`best` — ``time.perf_counter`` helpers.

Each case runs in its own process so peak memory is that case's alone and one code's
caches, thread pools and FFTW wisdom cannot help or hurt another's timing. Peers are run
alternately (temsim, abtem, temsim, …) so a change of machine load hits both.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable

RESULT_MARK = "@@BENCH-RESULT@@"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f in ("avx", "avx2", "avx512f", "fma"))
    except OSError:
        pass
    return []


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "") if commit else None
    except Exception:
        return None


def machine_info() -> dict:
    """Description of the machine and software the benchmarks ran on."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = os.cpu_count()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_simd": _cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "memory_total_gib": round((_mem_total() or 0) / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "pyfftw": _version("pyFFTW") or _version("pyfftw"),
        "numba": _version("numba"),
        "abtem": _version("abtem"),
        "temsim": _version("temsim"),
        "git_commit": _git_commit(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def timed(fn: Callable, repeat: int) -> list[float]:
    """Wall times (s, ``time.perf_counter``) of ``repeat`` calls of ``fn()``."""
    return timed_cpu(fn, repeat)[0]


def timed_cpu(fn: Callable, repeat: int) -> tuple[list[float], list[float]]:
    """Wall times and process CPU times (s, all threads, ``time.process_time``) of ``repeat`` calls.

    On a shared machine the CPU time of a single-threaded run is nearly independent of the
    other jobs' load, so it is reported next to the wall time.
    """
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def best(times: list[float]) -> float:
    """The best (smallest) time: the least disturbed by other processes on a shared machine."""
    return float(min(times))


def run_case(
    module_file: str, case: str, kwargs: dict | None = None, env: dict | None = None, timeout: float = 900.0
) -> dict:
    """Run ``case`` of the benchmark module ``module_file`` in a fresh subprocess.

    Returns the case's result dict plus ``peak_rss_mib`` (peak resident memory of the whole
    process), ``baseline_rss_mib`` (after imports, before the case), ``cpu_s`` and
    ``wall_s`` of the case and ``loadavg`` when it ended; on failure ``{"error": ...}``.
    """
    full_env = dict(os.environ)
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    cmd = [sys.executable, module_file, "--case", case, "--kwargs", json.dumps(kwargs or {})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"case {case} timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {"error": f"case {case} failed (exit {proc.returncode}): {tail}"}


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2
    except OSError:  # pragma: no cover
        return _rss_mib()


def child_main(cases: dict[str, Callable[..., dict]]) -> None:
    """Subprocess entry point: run one case, print its result as one marked JSON line."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True, choices=sorted(cases))
    parser.add_argument("--kwargs", default="{}")
    args = parser.parse_args()
    kwargs = json.loads(args.kwargs)
    baseline = _current_rss_mib()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = cases[args.case](**kwargs)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    result.update(
        {
            "case": args.case,
            "kwargs": kwargs,
            "threads_env": os.environ.get("TEMSIM_NUM_THREADS"),
            "peak_rss_mib": round(_rss_mib(), 1),
            "baseline_rss_mib": round(baseline, 1),
            "peak_rss_delta_mib": round(_rss_mib() - baseline, 1),
            "case_wall_s": round(wall, 3),
            "case_cpu_s": round(cpu, 3),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    )
    print(RESULT_MARK + json.dumps(result), flush=True)


def fft_lower_bound(shape: tuple[int, ...], threads: int, repeat: int = 5, min_time: float = 0.3) -> dict:
    """Time the multislice lower bound on ``shape`` = ``(batch, nx, ny)`` or ``(nx, ny)``.

    One "slice" of the bound is what no multislice step can avoid: an in-place forward FFT,
    an in-place backward FFT and two complex64 multiplies over the buffer (transmission
    function in real space, propagator in Fourier space), with the plans of
    :class:`temsim.backend.FFTPlan` (pyFFTW) and ``threads`` threads. Plans made by rule
    (FFTW_ESTIMATE, temsim's default) and timed plans (FFTW_MEASURE) are both tried and the
    faster one is the bound.

    Returns planning time (s) and the best time per slice (s) over ``repeat`` rounds, and per
    probe-slice (divided by the batch).
    """
    import contextlib

    import numpy as np

    from temsim.backend import FFTPlan

    try:
        from temsim.backend import fft_planning
    except ImportError:  # temsim 0.1.0 always measured its plans
        efforts = {"measure": contextlib.nullcontext}
    else:
        efforts = {"estimate": lambda: fft_planning("estimate"), "measure": lambda: fft_planning("measure")}
    n = shape[-1] * shape[-2]
    batch = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    rng = np.random.default_rng(0)
    t = np.exp(1j * rng.uniform(0, 2 * np.pi, shape[-2:])).astype(np.complex64)
    p = (np.exp(1j * rng.uniform(0, 2 * np.pi, shape[-2:])) / n).astype(np.complex64)
    found = {}
    for effort, context in efforts.items():
        t0 = time.perf_counter()
        with context():
            plan = FFTPlan(shape, np, "complex64", threads=threads)
        planning = time.perf_counter() - t0
        plan.buffer[...] = 1.0

        def step(plan=plan):
            plan.buffer *= t
            plan.forward()
            plan.buffer *= p
            plan.backward()

        step()
        t0 = time.perf_counter()
        step()
        single = time.perf_counter() - t0
        inner = max(1, int(min_time / max(single, 1e-6)))
        per_slice, per_slice_cpu = [], []
        for _ in range(repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(inner):
                step()
            per_slice.append((time.perf_counter() - t0) / inner)
            per_slice_cpu.append((time.process_time() - c0) / inner)
        found[effort] = (planning, per_slice, per_slice_cpu)
    effort = min(found, key=lambda e: best(found[e][1]))
    planning, per_slice, per_slice_cpu = found[effort]
    return {
        "shape": list(shape),
        "threads": threads,
        "planning_effort": effort,
        "planning_s": round(planning, 4),
        "per_slice_s": best(per_slice),
        "per_slice_all_s": per_slice,
        "per_probe_slice_s": best(per_slice) / batch,
        "per_slice_cpu_s": best(per_slice_cpu),
        "per_probe_slice_cpu_s": best(per_slice_cpu) / batch,
    }


def best_lower_bound(gpts: tuple[int, int], threads: int, max_batch: int, quick: bool = False) -> dict:
    """The FFT lower bound per wave-slice: the best over batch sizes and thread layouts on ``gpts``.

    Layouts: ``threads`` threads inside each FFT, or (with more than one thread) one
    single-threaded stream of batches per core, counted as the one-thread cost divided by the
    number of cores (perfect scaling, so still a lower bound). Batches 1, 2, 4, … up to
    ``max_batch``. A bound measured only at the batch the engine happens to use would hide the
    cost of a batch that falls out of cache.
    """
    batches = sorted({b for b in (1, 2, 3, 4, 8, 16, 32, 64, 128, 256) if b <= max_batch} | {max_batch})
    rows = []
    for batch in batches:
        for t in sorted({1, threads}):
            bound = fft_lower_bound((batch, *gpts), t, repeat=2 if quick else 4, min_time=0.05 if quick else 0.2)
            rows.append(
                {
                    "batch": batch,
                    "threads": t,
                    "layout": f"{t} thread(s) per FFT",
                    "per_probe_slice_s": bound["per_probe_slice_s"],
                    "planning_effort": bound["planning_effort"],
                }
            )
            if t == 1 and threads > 1:
                rows.append(
                    {
                        "batch": batch,
                        "threads": threads,
                        "layout": f"{threads} single-thread streams",
                        "per_probe_slice_s": bound["per_probe_slice_s"] / threads,
                        "planning_effort": bound["planning_effort"],
                    }
                )
    best_row = min(rows, key=lambda r: r["per_probe_slice_s"])
    return {
        **best_row,
        "per_probe_slice_cpu_s": best_row["per_probe_slice_s"] * best_row["threads"],
        "gpts": list(gpts),
        "candidates": rows,
    }
