"""Record measured validation numbers under ``validation/output/`` (untracked, git-ignored).

``record("core_validation", "weak_phase_object", {...})`` merges one entry into
``output/core_validation.json`` (keys sorted, floats as JSON numbers) and rewrites the
companion ``output/core_validation.md`` table, so each run leaves the latest numbers of
every check side by side with the thresholds the tests assert.

Running the tests never changes tracked files. The committed record of the numbers is
``validation/SUMMARY.md``, refreshed on purpose after a full run with
``python validation/summarize.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "output"


def _plain(value):
    """JSON-friendly copy of numpy scalars/arrays nested in dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def record(name: str, key: str, data: dict) -> None:
    """Merge ``data`` under ``key`` into ``output/<name>.json`` and refresh ``<name>.md``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    store = json.loads(path.read_text()) if path.exists() else {}
    store[key] = _plain(data)
    path.write_text(json.dumps(store, indent=2, sort_keys=True) + "\n")
    lines = [f"# {name}", "", f"Written by `validation/test_{name}.py` (latest run of each check).", ""]
    for entry, values in sorted(store.items()):
        lines += [f"## {entry}", "", "| quantity | value |", "|---|---|"]
        for k, v in sorted(values.items()):
            text = f"{v:.6g}" if isinstance(v, float) else json.dumps(v, ensure_ascii=False)
            lines.append(f"| {k} | {text} |")
        lines.append("")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
