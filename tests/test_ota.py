"""Signed updates on CPython: the pure Ed25519 against OpenSSL's, and a power cut at every
file change with POSIX torn writes (pytest also runs tests/mpy/test_ota_flow.py on CPython)."""

import importlib
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st

from firmware.common.ota import archive, download, ed25519, slots
from firmware.common.ota.slots import Slots

sys.path.insert(0, str(Path(__file__).parent / "mpy"))  # the scenarios import ota_world as MicroPython does
world = importlib.import_module("ota_world")


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300), flip=st.integers(0, 511))
def test_signatures_of_openssl_verify_and_flipped_ones_do_not(seed, message, flip):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = world.public_key(seed)
    signature = key.sign(message)
    assert world.sign(seed, message) == signature  # the test signer is RFC 8032's, byte for byte
    assert ed25519.verify(public, message, signature)
    forged = bytearray(signature)
    forged[flip // 8] ^= 1 << (flip % 8)
    assert not ed25519.verify(public, message, bytes(forged))
    assert not ed25519.verify(public, message + b"x", signature)
    assert not ed25519.verify(world.public_key(bytes(31) + b"\x01"), message, signature)


def test_malleable_and_malformed_signatures_are_refused():
    seed = bytes(32)
    signature = world.sign(seed, b"m")
    s = int.from_bytes(signature[32:], "little")
    assert not ed25519.verify(world.public_key(seed), b"m", signature[:32] + (s + ed25519._L).to_bytes(32, "little"))
    assert not ed25519.verify(world.public_key(seed), b"m", signature[:63])
    assert not ed25519.verify(b"\xff" * 32, b"m", signature)  # y >= p: not a canonical point


class PowerCut(BaseException):
    """The supply failed: nothing after this runs (BaseException, so no firmware handler catches it)."""


def current_stage():
    """Which update stage the OTA code is in, from the functions on the call stack."""
    names = set()
    frame = sys._getframe(1)
    while frame:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    for stage, functions in (("switch", {"switch"}), ("first boot", {"boot", "confirm"}),
                             ("verify", {"install"})):
        if names & functions:
            return stage
    return "download"


class CuttingFlash:
    """Counts every change to files the OTA code makes and fails the k-th one half done.

    Installed as the ``open`` and ``os`` the OTA modules see; a torn write keeps
    the bytes written before the cut, as POSIX files do (harsher than LittleFS).
    """

    def __init__(self, cut_at):
        self.cut_at = cut_at
        self.count = 0
        self.cut_stage = None

    def _tick(self):
        self.count += 1
        if self.count == self.cut_at:
            self.cut_stage = current_stage()
            return True
        return False

    def open(self, path, mode="r"):
        f = open(path, mode)
        if "w" not in mode and "+" not in mode:
            return f
        write = f.write

        def cutting_write(data):
            if self._tick():
                write(bytes(data[:len(data) // 2]))
                f.close()
                raise PowerCut()
            return write(data)

        f.write = cutting_write
        return f

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in ("rename", "remove", "mkdir", "rmdir"):
            return real

        def cutting(*args):
            if self._tick():
                raise PowerCut()
            return real(*args)

        return cutting


def test_a_power_cut_at_every_write_ends_on_a_valid_image(tmp_path, monkeypatch):
    the_bundle = world.bundle(world.image(2, extra=100), 2)
    stages = set()
    cut_at = 1
    while True:
        flash = str(tmp_path / ("f%d" % cut_at))
        world.provision(flash, world.image(1), 1)
        cutter = CuttingFlash(cut_at)
        for module in (slots, download, archive):
            monkeypatch.setattr(module, "open", cutter.open, raising=False)
        monkeypatch.setattr(slots, "os", cutter)
        for _ in range(8):
            try:
                if world.update(flash, the_bundle):
                    break
            except PowerCut:
                continue  # and power on again
        monkeypatch.undo()
        assert world.running_version(Slots(flash).boot()) == 2, "not updated after a cut at write %d" % cut_at
        assert world.kept_intact(flash)
        if cutter.cut_stage is None:
            break  # the whole update ran without reaching the cut: every write has been cut once
        stages.add(cutter.cut_stage)
        cut_at += 1
    assert stages == {"download", "verify", "switch", "first boot"}
    assert cut_at > 20
