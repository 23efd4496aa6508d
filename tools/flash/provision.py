"""Provision one module over its serial port: firmware, config, keys, verification, lock, record.

Steps (docs/installer.md): check the board, erase its flash, copy the files,
verify every file by SHA-256 on the board, lock it, then write the
provisioning record central imports. The record is written only once the
module verified; a module that fails any step is reported and left unlocked.
"""

import base64
import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path

from firmware.common.ota import archive, manifest
from firmware.common.ota.slots import DIGEST_FILE, FILES_INDEX, State
from tools.flash import build, bundle
from tools.flash.rawrepl import DeviceError
from tools.flash.workorder import InstallerError

DEVICE_DIR = Path(__file__).parent / "device"
CHUNK = 2048  # raw bytes per exec: a 2.7 kB base64 line, small against a board's heap
METERS_CSV_COLUMNS = ("meter_id", "group_id", "resource", "pulse_constant", "serial_number", "initial_reading",
                      "device_id")
KEYS_CSV_COLUMNS = ("device_id", "key")
STEPS = ("check", "erase", "copy", "verify", "lock")

# Defined on the board once per session; every step below calls them.
HELPERS = """\
import os, hashlib, binascii
def _mkdirs(p):
    b = ''
    for part in p.split('/')[:-1]:
        b = b + '/' + part if b else part
        try:
            os.mkdir(b)
        except OSError:
            pass
def _open(p):
    global _f
    _mkdirs(p)
    _f = open(p + '.new', 'wb')
def _w(s):
    _f.write(binascii.a2b_base64(s))
def _close(p):
    _f.close()
    os.rename(p + '.new', p)
def _sha(p):
    h = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(b[:n])
    return binascii.hexlify(h.digest()).decode()
def _erase(p):
    for name, kind, *_ in os.ilistdir(p):
        q = p + '/' + name if p != '.' else name
        if kind == 0x4000:
            _erase(q)
            os.rmdir(q)
        else:
            os.remove(q)
"""
FREE_MARGIN = 2  # the board needs twice the firmware's size free: two slots, and room for an update


class Firmware:
    """The application image a module starts with, and its sequence number."""

    def __init__(self, files, seq):
        self.files = files
        self.seq = seq
        self.image_sha256 = hashlib.sha256(archive.pack(files)).digest()

    @classmethod
    def compiled(cls, board="d100fc"):
        """This checkout's firmware, compiled here: seq 0, so any signed release replaces it."""
        return cls(build.compile_firmware(board), 0)

    @classmethod
    def from_bundle(cls, data, vendor_public_key):
        """A vendor's signed release: checked against the vendor key, then unpacked."""
        b = bundle.read(data)
        b.verify(vendor_public_key)
        if b.manifest.class_id != manifest.CLASS_D100FC:
            raise InstallerError("this release is for another kind of device, not a D100FC module")
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "img").write_bytes(b.image)
            archive.unpack(str(Path(tmp, "img")), tmp + "/slot", b.manifest.image_sha256)
            names = Path(tmp, "slot", FILES_INDEX).read_text().split("\n")
            files = [(n, Path(tmp, "slot", n).read_bytes()) for n in names]
        return cls(files, b.manifest.seq)


def device_files(order, firmware, vendor_public_key):
    """[(path on the board, bytes)] for one module, boot.py (the lock) last."""
    slot = "ota/slot0/"
    files = [("service.py", (DEVICE_DIR / "service.py").read_bytes()),
             ("main.py", (DEVICE_DIR / "main.py").read_bytes()),
             (build.STAGE1_NAME, build.stage1())]
    files += [(slot + name, data) for name, data in firmware.files]
    files += [(slot + FILES_INDEX, "\n".join(n for n, _ in firmware.files).encode()),
              (slot + DIGEST_FILE, firmware.image_sha256),
              ("ota/state", State(0, 0, 0, firmware.seq).encode()),
              ("config.json", json.dumps(order.config(), sort_keys=True).encode()),
              ("keys/module.key", order.key),
              ("keys/vendor.pub", vendor_public_key)]
    if order.network is not None:
        files.append(("keys/network.key", order.network[1]))
    files.append(("boot.py", (DEVICE_DIR / "boot.py").read_bytes()))
    return files


def provision(repl, order, firmware, vendor_public_key, progress=lambda step, done, total: None):
    """Run every step on the board behind ``repl`` (entered raw REPL); raise DeviceError on failure."""
    files = device_files(order, firmware, vendor_public_key)
    progress("check", 0, 1)
    repl.exec(HELPERS)
    name = repl.exec("import sys\nprint(sys.implementation.name)").decode().strip()
    if name != "micropython":
        raise DeviceError("the board runs %s, not MicroPython" % name)
    progress("erase", 0, 1)
    repl.exec("_erase('.')")
    free = int(repl.exec("st = os.statvfs('.')\nprint(st[0] * st[4])"))
    need = FREE_MARGIN * sum(len(data) for _, data in files)
    if free < need:
        raise DeviceError("the board has %d bytes free, the firmware needs %d" % (free, need))
    for i, (path, data) in enumerate(files[:-1]):
        progress("copy", i, len(files) - 1)
        _copy(repl, path, data)
    progress("verify", 0, len(files) - 1)
    _verify(repl, files[:-1])
    progress("lock", 0, 1)
    _copy(repl, *files[-1])
    _verify(repl, files[-1:])
    progress("lock", 1, 1)


def _copy(repl, path, data):
    repl.exec("_open(%r)" % path)
    for i in range(0, len(data), CHUNK):
        repl.exec("_w(%r)" % base64.b64encode(data[i:i + CHUNK]).decode())
    repl.exec("_close(%r)" % path)


def _verify(repl, files):
    paths = [p for p, _ in files]
    answer = repl.exec("for p in %r:\n print(_sha(p))" % (paths,)).decode().split()
    for (path, data), got in zip(files, answer):
        if got != hashlib.sha256(data).hexdigest():
            raise DeviceError("%s on the board does not match what was sent: provision the module again" % path)
    if len(answer) != len(files):
        raise DeviceError("the board hashed %d of %d files" % (len(answer), len(files)))


def write_record(out_dir, order):
    """Append the module to the provisioning record: meters.csv (central imports it) and keys.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _append(out / "meters.csv", METERS_CSV_COLUMNS,
            [(order.meter_id(m), m.group_id, m.resource, m.pulse_constant, m.serial, str(m.reading), order.device_id)
             for m in order.meters])
    keys = out / "keys.csv"
    if not keys.exists():
        keys.touch(mode=0o600)  # module keys: readable by the operator's account only
    _append(keys, KEYS_CSV_COLUMNS, [(order.device_id, order.key.hex())])


def _append(path, columns, rows):
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
