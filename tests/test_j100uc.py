"""The J100UC collector tests of tests/mpy/test_j100uc.py, run on CPython (the simulator's host)."""

import sys

import pytest

from tests.micropython_port import REPO

sys.path.insert(0, str(REPO / "tests" / "mpy"))
import test_j100uc as cases  # noqa: E402

NAMES = sorted(n for n in dir(cases) if n.startswith("test_"))


@pytest.mark.parametrize("name", NAMES)
def test_on_cpython(name):
    getattr(cases, name)()
