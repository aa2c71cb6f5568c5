"""Run temsim's speed and memory benchmarks: ``python benchmarks/run.py [--quick] [--only NAME ...]``.

Benchmark module interface
==========================
Every file ``benchmarks/bench_<name>.py`` is a benchmark; this script imports it by path
and calls its ``run`` function. A module must define

``run(quick: bool) -> dict``
    Run all of the benchmark's cases and return a JSON-serializable dict with

    ``"title"``   (str)   one line describing the case (structure, size, energy, sampling);
    ``"targets"`` (list)  one dict per target of the issue: ``{"description": str,
                          "measured": float, "threshold": str (e.g. "≤ 1.3"), "met": bool}``;
    ``"markdown"`` (str)  a markdown fragment (table + notes) for the summary;
    anything else (``"cases"`` with raw timings, grids, memory …) is stored in the JSON.

    ``quick=True`` must finish in well under a minute (reduced sizes are fine if the title
    says so); the full run of all modules must stay within ~10 minutes on a 2-core machine.

and may define ``NAME`` (default: the file name without ``bench_``).

Timings use ``time.perf_counter`` and report the best of several runs (the least disturbed
by other processes); FFT planning is excluded from the timed runs and reported separately.
Peers (abTEM) are timed alternately with temsim, each case in its own process
(``_harness.run_case``), which also gives each case's peak memory.

Results
=======
``benchmarks/results/<name>.json`` (``results/quick/`` with ``--quick``) holds each module's
dict plus the machine description (CPU model, cores, memory, numpy/pyFFTW/abTEM versions,
load average, date, git commit); ``SUMMARY.md`` next to them is rebuilt from all JSON files
there. A module that raises is recorded with its traceback and the others still run; the
exit status is 1 if any module failed, 0 otherwise (missed targets are reported, not errors).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _harness  # noqa: E402


def discover() -> dict[str, str]:
    """``{name: path}`` of every ``bench_*.py`` module next to this script, sorted by name."""
    found = {}
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[len("bench_") : -len(".py")]
        found[name] = path
    return found


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(f"temsim_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"{path} has no run(quick: bool) -> dict function")
    return module


def run_one(name: str, path: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        module = load(name, path)
        result = module.run(quick=quick)
        if not isinstance(result, dict):
            raise TypeError(f"run() of {path} returned {type(result).__name__}, not dict")
        name = getattr(module, "NAME", name)
    except Exception:
        result = {"title": name, "error": traceback.format_exc(), "targets": [], "markdown": ""}
    result["name"] = name
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["loadavg_before"] = load_before
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def write_summary(directory: str) -> str:
    """Rebuild ``SUMMARY.md`` in ``directory`` from its JSON results; return its path."""
    results = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if not isinstance(r, dict):
            continue
        if "targets" not in r:  # written by something else than run.py: show its own markdown if any
            stem = os.path.splitext(path)[0]
            md = stem + ".md"
            r = {
                "name": os.path.basename(stem),
                "title": f"(not produced by run.py; raw data in {os.path.basename(path)})",
                "foreign": True,
                "markdown": open(md).read() if os.path.exists(md) else "",
                "targets": [],
            }
        results.append(r)
    lines = ["# temsim benchmark results", ""]
    lines.append(
        "Produced by `python benchmarks/run.py"
        + (" --quick" if "quick" in directory else "")
        + "`; each section lists the machine it ran on. Times are the best of the repeats "
        "(`time.perf_counter`), FFT planning excluded; LB = lower bound (in-place pyFFTW "
        "forward+backward FFT pair + two complex64 multiplies on the same grid, batch and threads)."
    )
    lines.append("")
    for r in results:
        if not isinstance(r, dict):
            continue
        m = r.get("machine") if isinstance(r.get("machine"), dict) else {"cpu_model": r.get("machine")}
        lines.append(f"## {r.get('name')}: {r.get('title')}")
        lines.append("")
        if r.get("foreign"):
            lines += [r["markdown"], ""]
            continue
        lines.append(
            f"Machine: {m.get('cpu_model')} ({m.get('usable_cpus')} usable CPUs, {m.get('memory_total_gib')} GiB, "
            f"SIMD {', '.join(m.get('cpu_simd', []))}); Python {m.get('python')}, numpy {m.get('numpy')}, "
            f"pyFFTW {m.get('pyfftw')}, abTEM {m.get('abtem')}, temsim {m.get('temsim')} "
            f"(commit {m.get('git_commit')}); {m.get('date')}; load average before/after "
            f"{r.get('loadavg_before')} / {r.get('loadavg_after')} (other jobs shared the machine); "
            f"benchmark wall time {r.get('wall_s')} s."
        )
        lines.append("")
        if r.get("error"):
            lines += ["**FAILED**", "", "```", r["error"].strip()[-3000:], "```", ""]
            continue
        if r.get("markdown"):
            lines += [r["markdown"], ""]
        if r.get("targets"):
            lines += ["| target | measured | threshold | met |", "|---|---|---|---|"]
            for t in r["targets"]:
                lines.append(
                    f"| {t['description']} | {t['measured']} | {t['threshold']} | {'yes' if t['met'] else '**no**'} |"
                )
            lines.append("")
    path = os.path.join(directory, "SUMMARY.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, < 2 minutes in all")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    names = list(available)
    if args.only:
        unknown = [n for n in args.only if n not in available]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
        names = args.only
    out_dir = os.path.join(HERE, "results", "quick") if args.quick else os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    machine = _harness.machine_info()
    failed = []
    for name in names:
        print(f"[benchmarks] {name} ({'quick' if args.quick else 'full'}) …", flush=True)
        result = run_one(name, available[name], args.quick)
        result["machine"] = machine
        with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
            json.dump(result, f, indent=1, default=float)
        if result.get("error"):
            failed.append(name)
            print(result["error"], file=sys.stderr)
        for t in result.get("targets", []):
            print(f"  {'ok  ' if t['met'] else 'MISS'} {t['description']}: {t['measured']} (target {t['threshold']})")
        print(f"  done in {result['wall_s']} s", flush=True)
    summary = write_summary(out_dir)
    print(f"[benchmarks] results in {out_dir} (summary: {summary})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
