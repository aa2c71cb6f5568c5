"""Memory guards: an oversized request is refused with its estimate before anything is allocated."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import temsim
from temsim.memory import available_memory, estimate_batch_size, require

CAPPED = textwrap.dedent(
    """
    import resource, sys
    import temsim
    from temsim.memory import available_memory
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    before = available_memory()
    assert before < int(sys.argv[1]), before
    try:
        {call}
    except temsim.MemoryLimitError as err:
        print("REFUSED", err)
    except MemoryError:
        print("RAW MemoryError")
    """
)


def _capped(call: str, cap: int = 3 * 1024**3) -> str:
    code = CAPPED.replace("{call}", call)
    result = subprocess.run([sys.executable, "-c", code, str(cap)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "call, what",
    [
        ("temsim.Grid((500.0, 500.0), (20000, 20000))", "20000×20000 grid"),
        ("temsim.Potential(temsim.structure.tile(temsim.structure.srtio3(), (60, 60, 1)), sampling=0.01)", "grid"),
        ("temsim.GridScan(sampling=0.0005).resolve((20.0, 20.0), 0.1)", "probe positions"),
    ],
)
def test_oversized_requests_are_refused_with_the_estimate_under_an_address_space_cap(call, what):
    out = _capped(call)
    assert "REFUSED" in out and what in out and "GiB" in out, out


def test_available_memory_honours_the_address_space_limit_and_require_names_the_fix():
    assert 0 < available_memory()
    with pytest.raises(temsim.MemoryLimitError, match=r"needs 2\.00 GiB, more than the 1\.00 GiB allowed; do less"):
        require(2 * 1024**3, 1024**3, "this", "do less")
    assert estimate_batch_size((100, 100), 32 * 100 * 100 * 7) == 7
    assert estimate_batch_size((100, 100), 1) == 1
