"""Command line: ``temsim plan --example graphene-si`` or ``temsim plan my_study.toml``."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _jobs(text: str) -> int:
    """``--jobs``: a positive integer (argparse turns the error into a usage message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _plan(args) -> int:
    from temsim.errors import TemsimError
    from temsim.planning import plan, study_fingerprint
    from temsim.report import finish_output, format_table, prepare_output, safe_name, write_report
    from temsim.settings import ExecutionSettings
    from temsim.study import EXAMPLES, example_study, load_study, read_study_document

    if args.list_examples:
        for name, builder in EXAMPLES.items():
            print(f"{name}: {builder().description}")
        return 0
    if (args.example is None) == (args.study is None):
        print("temsim plan: give a study file or --example NAME (one of " + ", ".join(EXAMPLES) + ")", file=sys.stderr)
        return 2
    try:
        settings = ExecutionSettings(
            threads=args.jobs,
            progress=False if args.quiet else None,
            scheduler=args.scheduler,
            workers=args.workers,
        )
        if args.study and "sweep" in read_study_document(args.study):
            return _sweep(args, settings)
        study = example_study(args.example) if args.example else load_study(args.study)
        # the study name becomes one folder name inside plan-output/, never a path
        output = args.output or os.path.join("plan-output", safe_name(study.name))
        # claimed before any simulation: a file, an unwritable folder or an existing report is refused now
        output = prepare_output(output, study_fingerprint(study), overwrite=args.overwrite)
        start = time.perf_counter()
        result = plan(
            study,
            settings=settings,
            checkpoint_dir=os.path.join(output, "checkpoints"),
            limits_of_any_detector=not args.modes_only,
        )
        paths = write_report(result, output, overwrite=True)
        finish_output(output)
    except (TemsimError, FileExistsError) as err:
        print(f"temsim plan: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"temsim plan: error: {err.filename or 'the output'}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"\nwrote {', '.join(sorted(paths.values()))} in {time.perf_counter() - start:.1f} s")
    return 0


def _sweep(args, settings) -> int:
    """``temsim plan study.toml`` where the study has a [sweep] table: plan every point of the sweep."""
    from temsim.checkpoints import input_key
    from temsim.report import finish_output, prepare_output, safe_name
    from temsim.study import read_study_document
    from temsim.sweep_report import SWEEP_FILES, format_sweep_table, write_sweep_report
    from temsim.sweeps import sweep, sweep_from_document

    data = read_study_document(args.study)
    spec = sweep_from_document(data, base=os.path.dirname(os.path.abspath(args.study)))
    output = args.output or os.path.join("plan-output", safe_name(str(data.get("name", "study"))))
    fingerprint = input_key({"document": data, "kind": "sweep"})
    output = prepare_output(output, fingerprint, overwrite=args.overwrite, files=SWEEP_FILES)
    start = time.perf_counter()
    result = sweep(spec, settings=settings, checkpoint_dir=os.path.join(output, "checkpoints"))
    paths = write_sweep_report(result, output, overwrite=True)
    finish_output(output)
    print(format_sweep_table(result))
    print(f"\nwrote {', '.join(sorted(paths.values()))} in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv=None) -> int:
    from temsim import compare_cli
    from temsim._version import __version__

    parser = argparse.ArgumentParser(prog="temsim", description="Electron scattering simulation and dose planning")
    parser.add_argument("--version", action="version", version=f"temsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="minimum detectable dose per imaging mode and energy, against damage")
    p.add_argument("study", nargs="?", help="study TOML file (see docs/planning.md)")
    p.add_argument("--example", help="run a built-in example study (see --list-examples)")
    p.add_argument("--list-examples", action="store_true", help="list the built-in examples")
    p.add_argument("--output", "-o", help="output directory (default plan-output/<study name, as a safe folder name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in the output directory")
    p.add_argument("--jobs", type=_jobs, default=None, help="threads for FFTs, ≥ 1 (default: all cores)")
    p.add_argument(
        "--scheduler",
        default=None,
        help="where the scans' work units run: 'threads' (this process, one single-threaded probe stream per "
        "core), 'local' (a dask.distributed cluster on this machine, started for the run) or a dask scheduler "
        "address such as tcp://host:8786 (default: in this process, one unit at a time with threaded FFTs)",
    )
    p.add_argument(
        "--workers",
        type=_jobs,
        default=None,
        help="worker processes (--scheduler local) or threads (--scheduler threads), ≥ 1",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--modes-only",
        action="store_true",
        help="only the study's modes: without the 4D bound, joint, optimal-detector and quantum-limit rows "
        "(and their extra pass over the probe positions)",
    )
    compare_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "plan":
        return _plan(args)
    if args.command == "compare":
        return compare_cli.run(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
