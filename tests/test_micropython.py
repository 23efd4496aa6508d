"""The firmware and protocol on the real MicroPython interpreter.

Each tests/mpy/test_*.py module runs under the unix port through tests/mpy/runner.py;
every module under firmware/ and protocol/ must compile with mpy-cross.
"""

import re
import subprocess

import pytest

from balans.toolchain import REPO, run_micropython, tool

MPY_TESTS = sorted(p.stem for p in (REPO / "tests" / "mpy").glob("test_*.py"))
# protocol/ modules that are CPython-only by design (COSE and CBOR live on the agent and central)
CPYTHON_ONLY = {"protocol/batch.py", "protocol/cose.py"}
FIRMWARE_SOURCES = sorted(
    str(p.relative_to(REPO)) for d in ("firmware", "protocol") for p in (REPO / d).rglob("*.py")
    if str(p.relative_to(REPO)) not in CPYTHON_ONLY)


@pytest.mark.parametrize("module", MPY_TESTS)
def test_on_micropython(module):
    proc = run_micropython([str(REPO / "tests" / "mpy" / "runner.py"), str(REPO), module])
    out = proc.stdout + proc.stderr
    m = re.search(r"MPY-RESULT (\d+) (\d+)", out)
    assert m, "runner did not finish:\n" + out
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and passed > 0, out


@pytest.mark.parametrize("source", FIRMWARE_SOURCES)
def test_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / "out.mpy"
    proc = subprocess.run([tool("mpy-cross"), "-o", str(out), source], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
