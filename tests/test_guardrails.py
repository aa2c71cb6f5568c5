"""Guardrails that run inside pytest, so CI stays the README's one test command.

- lint and format: ``ruff check`` and ``ruff format --check`` (configuration in pyproject.toml);
- import layers and cycles: ``lint-imports`` (``[tool.importlinter]`` in pyproject.toml; the
  layers are described in docs/design.md);
- complexity: no function above cyclomatic complexity 20, and the two entry points that
  orchestrate everything (``temsim.scan``, ``temsim.planning.plan``) stay short;
- packaging: one version (``temsim._version``), ``py.typed`` shipped;
- validation: its numbers go to a git-ignored folder, never to tracked files.

Each test prints the tool's own findings when it fails. The tools come with the ``test`` extra;
a missing tool fails its test (a guardrail that silently does not run guards nothing).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import temsim

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "temsim"
LINTED = ["src", "tests", "validation", "benchmarks", "examples", "docs/conf.py"]

MAX_COMPLEXITY = 20  # cyclomatic complexity (radon) of any function or method
MAX_ENTRY_POINT_LINES = 80  # body of temsim.scan and temsim.planning.plan, docstring excluded


def _tool(module: str, script: str) -> list[str]:
    """Command that runs a tool of the test environment (the venv's script, else python -m)."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: the guardrails need the test extra (pip install -e '.[test]')")
    candidate = Path(sys.executable).parent / script
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    return _run(["git", "rev-parse", "--is-inside-work-tree"]).returncode == 0


# --------------------------------------------------------------------------- lint and format


def test_ruff_check():
    result = _run([*_tool("ruff", "ruff"), "check", "--no-cache", "--output-format", "concise", *LINTED])
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


def test_ruff_format():
    result = _run([*_tool("ruff", "ruff"), "format", "--no-cache", "--check", "--diff", *LINTED])
    assert result.returncode == 0, (
        "files not formatted (fix with `ruff format src tests validation benchmarks examples docs/conf.py`):\n"
        f"{result.stdout[-20000:]}{result.stderr}"
    )


# --------------------------------------------------------------------------- import layers


def test_import_layers_and_no_cycles():
    """Layers contract and acyclic sibling modules (imports inside functions included)."""
    result = _run([*_tool("importlinter", "lint-imports"), "--no-cache"])
    assert result.returncode == 0, f"lint-imports: broken import contracts:\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------- complexity


def _blocks(items):
    """Functions, methods and closures of radon's result, flattened."""
    from radon.visitors import Class

    for block in items:
        if isinstance(block, Class):
            yield from _blocks(block.methods)
        else:
            yield block
            yield from _blocks(block.closures)


def test_cyclomatic_complexity():
    if importlib.util.find_spec("radon") is None:
        pytest.fail("radon is not installed: the guardrails need the test extra (pip install -e '.[test]')")
    from radon.complexity import cc_visit

    offenders = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for block in _blocks(cc_visit(path.read_text(encoding="utf-8"))):
            if block.complexity > MAX_COMPLEXITY:
                where = f"{path.relative_to(ROOT)}:{block.lineno}"
                offenders.add((block.complexity, where, block.fullname))
    report = "\n".join(f"  CC {cc:3d}  {name}  ({where})" for cc, where, name in sorted(offenders, reverse=True))
    assert not offenders, (
        f"functions above cyclomatic complexity {MAX_COMPLEXITY} (split them into named steps):\n{report}"
    )


def _body_lines(function) -> tuple[int, str]:
    """Lines of a function's body without its docstring, and where it is defined."""
    function = inspect.unwrap(function)
    source, start = inspect.getsourcelines(function)
    definition = ast.parse(textwrap.dedent("".join(source))).body[0]
    body = definition.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    lines = definition.end_lineno - body[0].lineno + 1
    return lines, f"{Path(inspect.getsourcefile(function)).relative_to(ROOT)}:{start}"


def test_entry_points_are_short():
    """temsim.scan and temsim.planning.plan delegate: each body under 80 lines."""
    from temsim import planning

    sizes = {
        name: _body_lines(f) for name, f in {"temsim.scan": temsim.scan, "temsim.planning.plan": planning.plan}.items()
    }
    long = {name: size for name, size in sizes.items() if size[0] >= MAX_ENTRY_POINT_LINES}
    report = "\n".join(f"  {name}: {lines} lines ({where})" for name, (lines, where) in long.items())
    assert not long, f"entry points of {MAX_ENTRY_POINT_LINES} lines or more (docstring excluded):\n{report}"


# --------------------------------------------------------------------------- packaging


def test_single_source_version():
    assert temsim.__version__ == importlib.metadata.version("temsim")


def test_py_typed_is_shipped():
    assert (Path(temsim.__file__).parent / "py.typed").exists()


# --------------------------------------------------------------------------- validation output


def _load_record_module():
    spec = importlib.util.spec_from_file_location("_record_guardrail", ROOT / "validation" / "_record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_results_folder_is_git_ignored():
    record = _load_record_module()
    if _in_git_checkout():
        ignored = _run(["git", "check-ignore", "-q", str(record.RESULTS / "any.json")]).returncode == 0
    else:  # an unpacked source tree: the .gitignore entry is what makes the folder untracked
        entry = "/" + record.RESULTS.relative_to(ROOT).as_posix()
        ignored = any(line.strip().rstrip("/") == entry for line in (ROOT / ".gitignore").read_text().splitlines())
    assert ignored, f"{record.RESULTS} must be git-ignored: running the tests must not change tracked files"


def _validation_files_outside(results: Path) -> dict:
    """Path → (size, mtime) of every file under validation/ except the results folder."""
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in (ROOT / "validation").rglob("*")
        if path.is_file() and results not in path.parents and "__pycache__" not in path.parts
    }


def test_recording_validation_numbers_leaves_tracked_files_unchanged():
    record = _load_record_module()
    before = _validation_files_outside(record.RESULTS)
    name = "_guardrail_probe"
    try:
        record.record(name, "check", {"value": 1.0})
        written = (record.RESULTS / f"{name}.json").exists()
        after = _validation_files_outside(record.RESULTS)
    finally:
        for suffix in (".json", ".md"):
            (record.RESULTS / f"{name}{suffix}").unlink(missing_ok=True)
    assert written, f"record() should write into {record.RESULTS}"
    assert after == before, "recording a validation number changed files outside the untracked results folder"
