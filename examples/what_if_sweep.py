"""What-if sweep: which mode detects a Si dopant in graphene, at which convergence angle and critical dose,
when the defocus is known only to ±5 nm?

Run: python examples/what_if_sweep.py [--output DIR] [--small]   (default DIR: temsim-output/)

The study is an ordinary study document plus a ``[sweep]`` table (here written as a dict; the same
keys go into a TOML file run with ``temsim plan sweep.toml``). The critical-dose axis costs no
simulation: those points re-evaluate the rates simulated for the other keys. Writes
``what_if_sweep/sweep.md``, ``sweep.nc`` and ``sweep.png`` into the output folder and prints the
minimum dose per mode over the sweep with its band over the unknown defocus.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from temsim.sweep_report import format_sweep_table, write_sweep_report
from temsim.sweeps import sweep, sweep_from_document


def document(small: bool) -> dict:
    return {
        "name": "what-if-sweep",
        "specimen": {"example": "graphene", "arguments": {"vacuum": 2.0}, "supercell": [5, 3, 1]},
        "feature": {"kind": "substitution", "element": "Si", "host_element": "C"},
        "microscope": {"energies": [80e3], "semiangle_cutoff": 30.0, "aberrations": {"C10": 0.0}},
        "modes": [{"name": "HAADF", "inner": 60.0, "outer": 120.0}, {"name": "HRTEM", "defocus": -60.0}],
        "damage": {"critical_dose": 1e3},
        "dose": {"range": [1.0, 1e7]},
        "simulation": {"sampling": 0.1 if small else 0.06, "scan_step": 0.6 if small else 0.3, "window": 2.4},
        "sweep": {
            "microscope.semiangle_cutoff": [25.0, 30.0] if small else [20.0, 25.0, 30.0],
            "damage.critical_dose": {"start": 1e3, "stop": 1e6, "num": 2 if small else 7, "spacing": "log"},
            # defocus (C10 = −Δf, Å) known to ±50 Å: planned at 3 quantile midpoints of a normal
            "uncertain": {"microscope.aberrations.C10": {"sd": 50.0, "samples": 3}},
        },
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="temsim-output", help="directory for the results (default: %(default)s)")
    parser.add_argument(
        "--small",
        action="store_true",
        default=os.environ.get("TEMSIM_EXAMPLE_SMALL") == "1",
        help="a seconds-long run at reduced size (also: TEMSIM_EXAMPLE_SMALL=1)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    out = Path(args.output) / "what_if_sweep"
    spec = sweep_from_document(document(args.small))
    result = sweep(spec, checkpoint_dir=str(out / "checkpoints"), progress=not args.small)
    paths = write_sweep_report(result, str(out), overwrite=True)
    print(format_sweep_table(result))
    print(f"wrote {', '.join(sorted(paths.values()))}")
    return out


if __name__ == "__main__":
    main()
