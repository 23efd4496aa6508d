"""Compile a board's firmware with mpy-cross: the files that go into an image and onto a board.

What a D100FC runs is ``firmware/d100fc/``, the mesh, the OTA code and the
HAL contract in ``firmware/common/``, and every repository module those
import (the protocol modules, other common code), found by following their
imports.
"""

import ast
import subprocess
import tempfile
from pathlib import Path

from balans.toolchain import tool
from firmware.common.ota import archive

REPO = Path(__file__).resolve().parents[2]
BOARDS = ("d100fc", "j100uc")
STAGE1_SOURCE = "firmware/common/ota/slots.py"  # installed at the root as otaboot.mpy (docs/ota.md)
STAGE1_NAME = "otaboot.mpy"


def _imports(path):
    """Repository module names ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update("%s.%s" % (node.module, a.name) for a in node.names)
    return names


def _source(module):
    """The repository file of ``module`` (a package's __init__.py), or None if it is not ours."""
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def sources(board):
    """Repository-relative paths of every .py file ``board``'s firmware needs, sorted."""
    if board not in BOARDS:
        raise ValueError("unknown board %r: one of %s" % (board, ", ".join(BOARDS)))
    todo = [p for p in (REPO / "firmware" / board).glob("*.py")]
    for shared in ("ota", "mesh"):  # the board support wires the mesh in; nothing in d100fc imports it
        todo += list((REPO / "firmware" / "common" / shared).glob("*.py"))
    todo.append(REPO / "firmware/common/hal.py")
    found = set()
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        parts = path.relative_to(REPO).parts
        for i in range(1, len(parts)):  # the packages above it
            init = REPO.joinpath(*parts[:i], "__init__.py")
            if init.is_file():
                todo.append(init)
        for name in _imports(path):
            src = _source(name)
            if src is not None:
                todo.append(src)
    return sorted(str(p.relative_to(REPO)) for p in found)


def mpy_cross(source, name):
    """The .mpy bytes of repository file ``source``; ``name`` is the file name tracebacks show."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mpy"
        proc = subprocess.run([tool("mpy-cross"), "-s", name, "-o", str(out), str(REPO / source)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("mpy-cross failed on %s: %s" % (source, proc.stderr.strip()))
        return out.read_bytes()


def compile_firmware(board):
    """[(device path of the .mpy, bytes)] for the application slot, in a stable order."""
    files = []
    for src in sources(board):
        name = src[:-3] + ".mpy"
        files.append((name, mpy_cross(src, src)))
    return files


def image(board):
    """The application image (an OTA archive) of ``board``'s compiled firmware."""
    return archive.pack(compile_firmware(board))


def stage1():
    """The first boot stage: the slot chooser, compiled on its own."""
    return mpy_cross(STAGE1_SOURCE, "otaboot.py")
