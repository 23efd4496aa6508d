"""Benchmarks of the installer's tool and of update verification on the module.

``balans bench flash``: provision one module against the emulator (real
MicroPython behind a pty), verification included, with the serial line paced
at 115200 baud as a USB-serial cable to a board runs; the baseline is the
same provisioning unpaced (what the protocol and the board cost by themselves).

``balans bench ota``: one signed update over the mesh simulator's 30-hop chain
scenario in real T_OTA frames, with the real mesh and OTA firmware on every
node (tools/flash/fleetsim.py says what is real and what is modelled), 240
modules (``--quick``: 6); the fleet model's figure for the same size beside it.

``balans bench ota_verify``: the module's signature check of a manifest, the
compiled .mpy firmware on MicroPython under ``-X heapsize=64k``: time, and the
smallest heap it runs in; baseline: OpenSSL's Ed25519 on CPython.
"""

import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from balans.toolchain import tool
from firmware.common.ota import archive
from tools.flash import build, bundle, cli, fleetmodel, fleetsim, provision, workorder
from tools.flash.emulator import Emulator

BAUD = 115200
FLOOR_S = 60  # issue 7: provisioning one module, verification included, within 60 s
METERS = [{"resource": "electricity", "serial_number": "0123456", "pulse_constant": "3200", "group_id": "house-1",
           "initial_reading": "12345.6", "initial_reading_again": "12345.6"},
          {"resource": "water", "serial_number": "W-77", "pulse_constant": "100", "group_id": "house-1-water",
           "initial_reading": "321.05", "initial_reading_again": "321.05"}]
HEAP = "64k"  # issue 7: measure the verifier under -X heapsize=64k
FLEET_MODULES = 240  # issue 7: 240 modules over up to 30 hops
FLEET_LIMIT_S = 86400.0  # a simulated day at most: the fleet is meant to be done well before


def bench_flash(args):
    vendor = bundle.new_key()
    pub = bundle.public_bytes(vendor)
    order = workorder.order("002a", METERS)
    t = time.perf_counter()
    firmware = provision.Firmware.compiled()
    compile_s = time.perf_counter() - t
    files = provision.device_files(order, firmware, pub)
    figures = {"files": len(files), "bytes": sum(len(d) for _, d in files), "compile_s": round(compile_s, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        runs = (("unpaced", None),) if args.quick else (("unpaced", None), ("paced", BAUD))
        for name, baud in runs:
            with Emulator(Path(tmp) / name, baudrate=baud) as emu:
                seconds = cli.provision_one(emu.port, BAUD, order, firmware, pub, Path(tmp) / "record",
                                            pace=baud is not None)
            figures["provision_%s_s" % name] = round(seconds, 2)
    figures["provision_s"] = figures.get("provision_paced_s", figures["provision_unpaced_s"])
    figures["serial_share"] = round(1 - figures["provision_unpaced_s"] / figures["provision_s"], 3)
    figures["floor_s"] = FLOOR_S
    figures["baud"] = BAUD if not args.quick else 0
    return figures


VERIFY_SCRIPT = """\
import sys, time, gc
sys.path.insert(0, %(root)r)
from firmware.common.ota import manifest
import hashlib
env = open(%(root)r + '/envelope', 'rb').read()
pub = open(%(root)r + '/vendor.pub', 'rb').read()
gc.collect()
t = time.ticks_us()
for _ in range(%(runs)d):
    manifest.open_envelope(env, pub)
verify_us = time.ticks_diff(time.ticks_us(), t) // %(runs)d
t = time.ticks_us()
h = hashlib.sha256()
buf = bytearray(256)
with open(%(root)r + '/image', 'rb') as f:
    while True:
        n = f.readinto(buf)
        if not n:
            break
        h.update(buf[:n])
print('RESULT', verify_us, time.ticks_diff(time.ticks_us(), t))
"""


def _run_verify(root, heap_kb, runs):
    script = Path(root) / "bench.py"
    script.write_text(VERIFY_SCRIPT % {"root": str(root), "runs": runs})
    proc = subprocess.run([tool("micropython"), "-X", "heapsize=%dk" % heap_kb, str(script)],
                          capture_output=True, text=True, timeout=300, env={"MICROPYPATH": ".frozen"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return [int(x) for x in line.split()[1:]]
    return None


def bench_ota_verify(args):
    key = bundle.new_key()
    image = build.image("d100fc")
    b = bundle.make(image, 1, "d100fc", key)
    runs = 2 if args.quick else 10
    with tempfile.TemporaryDirectory() as root:
        for name, data in build.compile_firmware("d100fc"):
            path = Path(root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (Path(root) / "envelope").write_bytes(b.envelope)
        (Path(root) / "vendor.pub").write_bytes(bundle.public_bytes(key))
        (Path(root) / "image").write_bytes(image)
        result = _run_verify(root, int(HEAP[:-1]), runs)
        if result is None:
            raise RuntimeError("the verifier did not run under -X heapsize=%s" % HEAP)
        verify_us, sha_us = result
        low, high = 4, int(HEAP[:-1])  # smallest heap (kB) that still runs it: bisect
        while high - low > 1:
            mid = (low + high) // 2
            if _run_verify(root, mid, 1) is None:
                low = mid
            else:
                high = mid
    public = Ed25519PublicKey.from_public_bytes(bundle.public_bytes(key))
    body, signature = b.envelope[:116], b.envelope[116:]
    t = time.perf_counter()
    for _ in range(runs * 100):
        public.verify(signature, body)
    openssl_us = (time.perf_counter() - t) / (runs * 100) * 1e6
    return {"ed25519_verify_ms": verify_us / 1000, "min_heap_kb": high, "heapsize": HEAP,
            "image_bytes": len(image), "image_sha256_ms": sha_us / 1000,
            "openssl_verify_ms": round(openssl_us / 1000, 4),
            "ratio_to_openssl": round(verify_us / openssl_us, 1),
            "image_digest": hashlib.sha256(image).hexdigest()[:16]}


def bench_ota(args):
    """The fleet update in real frames on the simulator; the fleet model's figure for the same network beside it."""
    image = build.image("d100fc")
    modules = FLEET_MODULES
    if args.quick:  # six hops and a few of the firmware's files
        modules, image = 6, archive.pack(build.compile_firmware("d100fc")[:4])
    figures = fleetsim.run("chain", modules, 1, image, limit_s=FLEET_LIMIT_S)
    model = fleetmodel.simulate(len(image), modules, min(figures["depth"], modules), loss=0.1)
    figures["fleet_update_s_model"] = model["fleet_update_s"]
    figures["method"] = ("real: simulator channel, mesh MAC and duty cycle, T_OTA frames, the OTA firmware on every "
                         "node; modelled: %d s activation per module" % fleetsim.ACTIVATE_S)
    return figures


BENCHMARKS = {"flash": bench_flash, "ota": bench_ota, "ota_verify": bench_ota_verify}
