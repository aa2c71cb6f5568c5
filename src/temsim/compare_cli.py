"""``temsim compare IMAGE CONFIG.toml``: fit a study's simulation to an experimental image.

CONFIG.toml is a planning study file (``temsim plan`` conventions, see docs/planning.md) with
two optional tables read here and removed before the study is loaded:

.. code-block:: toml

    [experiment]
    pixel_size = 0.05             # Å, where the image file has no calibration (or [x, y])

    [compare]
    fit = ["defocus", "thickness", "blur", "shift", "scale", "dose"]
    hypothesis = "H1"             # H1: with the feature, H0: without
    mode = "HRTEM"                # the study's HRTEM mode (its defocus starts the search)
    energy = 80e3                 # eV, one of the study's energies
    likelihood = "gaussian"       # or "poisson" (counts, gain known)
    gain = 1.0                    # data units per electron (omit: estimated from the noise)
    efficiency = 1.0              # camera DQE(0)
    initial = {blur = 0.2}        # Å / data units
    bounds = {defocus = [-300, 300]}
    crop = {x = [0, 40], y = [0, 40]}   # Å
    row_shifts = false            # STEM: one shift per scan line along x (line jitter)
    defoci = [-40, -20, 0, 20, 40]      # STEM: a probe defocus series (Å), one scan each
    signal = "integrated"         # STEM: counts (default), signed (DPC, CoM) or integrated (iDPC, iCoM)
    regularization = 0.05         # iDPC/iCoM: the ε (1/Å²) the experiment was integrated with
"""

from __future__ import annotations

import copy
import os
import sys

from temsim.checks import as_number
from temsim.errors import StudyError

__all__ = ["add_parser", "run", "read_config"]

_COMPARE_KEYS = {
    "fit",
    "hypothesis",
    "mode",
    "energy",
    "likelihood",
    "gain",
    "efficiency",
    "initial",
    "bounds",
    "crop",
    "black_level",
    "vacuum_level",
    "row_shifts",
    "defoci",
    "signal",
    "regularization",
}
_EXPERIMENT_KEYS = {"pixel_size"}


def add_parser(sub) -> None:
    """Register ``temsim compare`` on the ``temsim`` command's subparsers."""
    p = sub.add_parser("compare", help="fit a simulation to an experimental image (defocus, thickness, dose, …)")
    p.add_argument("image", help="experimental image: .tif, .mrc, .dm3/.dm4, .emd, .nc, .npy, …")
    p.add_argument("config", help="study TOML file (temsim plan conventions) with optional [compare], [experiment]")
    p.add_argument("--output", "-o", help="report folder (default compare-output/<study name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--pixel-size", type=float, default=None, help="experimental pixel size in Å (overrides the file)")


def _number(key: str, value, unit: str = "", **bounds):
    return as_number(key, value, unit, error=StudyError, **bounds)


def _pair(key: str, value, unit: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise StudyError(f"{key} must be [low, high] in {unit}, got {value!r}")
    return tuple(_number(f"{key}[{i}]", v, unit) for i, v in enumerate(value))


def _table(key: str, value) -> dict:
    if not isinstance(value, dict):
        raise StudyError(f"{key} must be a table, e.g. {key} = {{...}}, got {value!r}")
    return value


def _choices(table: dict) -> dict:
    """``fit`` (a list of names), ``row_shifts`` (a boolean) and ``defoci`` (Å) of the [compare] table."""
    out: dict = {}
    if "fit" in table:
        if not isinstance(table["fit"], list) or not all(isinstance(f, str) for f in table["fit"]):
            raise StudyError(
                f'compare.fit must be a list of names, e.g. ["defocus", "thickness"], got {table["fit"]!r}'
            )
        out["fit"] = tuple(table["fit"])
    if "row_shifts" in table:
        if not isinstance(table["row_shifts"], bool):
            raise StudyError(f"compare.row_shifts must be true or false, got {table['row_shifts']!r}")
        out["row_shifts"] = table["row_shifts"]
    if "defoci" in table:
        defoci = table["defoci"]
        if not isinstance(defoci, list) or len(defoci) < 3:
            raise StudyError(f"compare.defoci must be a list of at least 3 probe defoci in Å, got {defoci!r}")
        out["defoci"] = tuple(_number(f"compare.defoci[{i}]", d, "Å") for i, d in enumerate(defoci))
    return out


def _options(table: dict) -> dict:
    unknown = set(table) - _COMPARE_KEYS
    if unknown:
        raise StudyError(f"unknown key(s) {sorted(unknown)} in [compare]; valid keys are {sorted(_COMPARE_KEYS)}")
    out: dict = {}
    out.update(_choices(table))
    for key in ("hypothesis", "mode", "likelihood", "signal"):
        if key in table:
            out[key] = str(table[key])
    for key, unit, bounds in (
        ("energy", "eV", {"minimum": 1e3, "maximum": 10e6}),
        ("gain", "data units per electron", {"minimum": 0, "exclusive_minimum": True}),
        ("efficiency", "", {"minimum": 0, "maximum": 1, "exclusive_minimum": True}),
        ("black_level", "data units", {}),
        ("vacuum_level", "data units", {}),
        ("regularization", "1/Å²", {"minimum": 0}),
    ):
        if key in table:
            out[key] = _number(f"compare.{key}", table[key], unit, **bounds)
    if "initial" in table:
        out["initial"] = {
            k: _number(f"compare.initial.{k}", v) for k, v in _table("compare.initial", table["initial"]).items()
        }
    if "bounds" in table:
        out["bounds"] = {
            k: _pair(f"compare.bounds.{k}", v, "") for k, v in _table("compare.bounds", table["bounds"]).items()
        }
    if "crop" in table:
        crop = _table("compare.crop", table["crop"])
        if set(crop) - {"x", "y"}:
            raise StudyError(f"compare.crop takes x and y ([low, high] in Å), got {sorted(crop)}")
        out["crop_to"] = {k: _pair(f"compare.crop.{k}", v, "Å") for k, v in crop.items()}
    return out


def read_config(path) -> tuple:
    """(Study, compare options, pixel size or None) from a study TOML file with [compare]/[experiment]."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from temsim.study import study_from_dict

    path = os.fspath(path)
    if not os.path.exists(path):
        raise StudyError(f"config file {path} does not exist")
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise StudyError(f"{path} is not valid TOML: {err}") from None
    data = copy.deepcopy(data)
    options = _options(_table("compare", data.pop("compare", {})))
    experiment = _table("experiment", data.pop("experiment", {}))
    if set(experiment) - _EXPERIMENT_KEYS:
        raise StudyError(
            f"unknown key(s) {sorted(set(experiment) - _EXPERIMENT_KEYS)} in [experiment]; valid: pixel_size"
        )
    pixel = experiment.get("pixel_size")
    if pixel is not None:
        pixel = (
            _pair("experiment.pixel_size", pixel, "Å")
            if isinstance(pixel, list)
            else _number("experiment.pixel_size", pixel, "Å", minimum=0, exclusive_minimum=True)
        )
    study = study_from_dict(data, base=os.path.dirname(os.path.abspath(path)))
    return study, options, pixel


def run(args) -> int:
    """Run ``temsim compare`` from parsed arguments; 0 on success, 1 on a reported error."""
    from temsim.comparison import compare
    from temsim.errors import TemsimError

    try:
        study, options, pixel = read_config(args.config)
        if args.pixel_size is not None:
            pixel = args.pixel_size
        output = args.output or os.path.join("compare-output", study.name)
        result = compare(args.image, study, pixel_size=pixel, **options)
        paths = result.report(output, overwrite=args.overwrite)
    except (TemsimError, FileExistsError, OSError) as err:
        print(f"temsim compare: error: {err}", file=sys.stderr)
        return 1
    print(result.summary())
    print(f"wrote {', '.join(sorted(paths.values()))}")
    return 0 if result.converged else 3
