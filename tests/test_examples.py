"""Every script in examples/ runs, at its small size, and writes only into the folder it is given.

Each example takes ``--output DIR`` and ``--small`` (also ``TEMSIM_EXAMPLE_SMALL=1``): a
seconds-long run of the same code path at reduced size. The scripts run in a subprocess with
the working directory set to a temporary folder, so a stray relative path cannot write into
the repository. All examples together take well under two minutes on two cores.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_examples_exist():
    assert SCRIPTS, f"no examples in {EXAMPLES}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_small(script, tmp_path):
    output = tmp_path / "output"
    env = {**os.environ, "TEMSIM_EXAMPLE_SMALL": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        # A deprecated call in an example (its warnings are attributed to __main__) fails.
        [sys.executable, "-W", "error::DeprecationWarning:__main__", str(script), "--small", "--output", str(output)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    written = sorted(p.name for p in output.iterdir()) if output.exists() else []
    assert written, f"{script.name} wrote nothing into --output {output}"
    strays = sorted(p.name for p in tmp_path.iterdir() if p.name != "output")
    assert not strays, f"{script.name} wrote outside its --output folder: {strays}"


def _temsim_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "temsim":
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "temsim":
                    yield alias.name, []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_uses_public_api(script):
    """Examples import temsim's public modules only: no private names, no solver internals."""
    problems = []
    for module, names in _temsim_imports(ast.parse(script.read_text(encoding="utf-8"))):
        parts = module.split(".")
        if any(part.startswith("_") for part in parts) or any(name.startswith("_") for name in names):
            problems.append(f"private: {module} {names}")
        if len(parts) > 2:
            problems.append(f"internal module (use temsim.* or temsim.<module>): {module}")
    assert not problems, f"{script.name}: " + "; ".join(problems)
