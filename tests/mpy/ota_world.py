"""A module's update life for tests, on CPython and on MicroPython alike.

A vendor key that signs on both interpreters (RFC 8032 signing, test-only:
not constant time; tests/test_ota.py checks it signs exactly as the
cryptography package does), small application images, a provisioned flash
directory with registers and keys beside the OTA files, and a driver that
powers the module on again and again until an update is done.
"""

import hashlib

from firmware.common.ota import archive, ed25519, manifest
from firmware.common.ota.sha512 import sha512
from firmware.common.ota.slots import Slots, State, make_dirs, read_file, remove_tree, write_atomic
from firmware.common.ota.updater import Updater
from protocol.errors import ProtocolError

VENDOR_SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
BATTERY_MV = 3600
# Files the application keeps beside the OTA directory: every update must leave them as they were.
KEEP = {"registers.bin": b"\x01\x02\x03\x04" * 8, "keys/module.key": b"K" * 16, "archive/0001": b"A" * 40}


def _times_base(k):
    acc, point = ed25519._IDENTITY, ed25519._B
    while k:
        if k & 1:
            acc = ed25519._add(acc, point)
        point = ed25519._double(point)
        k >>= 1
    return acc


def _expand(seed):
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8  # clamp: clear the 3 low bits and bits 254, 255 ...
    a |= 1 << 254  # ... then set bit 254
    return a, h[32:]


def public_key(seed):
    return ed25519._encode(_times_base(_expand(seed)[0]))


def sign(seed, message):
    a, prefix = _expand(seed)
    r = int.from_bytes(sha512(prefix + message), "little") % ed25519._L
    big_r = ed25519._encode(_times_base(r))
    k = int.from_bytes(sha512(big_r + public_key(seed) + message), "little") % ed25519._L
    return big_r + ((r + k * a) % ed25519._L).to_bytes(32, "little")


VENDOR_KEY = public_key(VENDOR_SEED)


def image(version, extra=0):
    """An application image whose app.py says its version; ``extra`` bytes make it span more pages."""
    return archive.pack([("app.py", b"VERSION = %d\n" % version),
                         ("lib/data.bin", bytes((version + i) & 0xFF for i in range(extra)))])


def bundle(img, seq, class_id=manifest.CLASS_D100FC, seed=VENDOR_SEED, page_size=64):
    envelope, table = manifest.build(img, seq, class_id, lambda body: sign(seed, body), page_size=page_size)
    return envelope, table, img


def provision(flash, img, seq):
    """What the flash tool leaves: image ``seq`` in slot 0, confirmed, and the application's own files."""
    for name, data in KEEP.items():
        make_dirs((flash + "/" + name).rsplit("/", 1)[0])
        write_atomic(flash + "/" + name, data)
    slots = Slots(flash)
    make_dirs(slots.root)
    write_atomic(slots.root + "/img", img)
    make_dirs(slots.slot_dir(0))
    archive.unpack(slots.root + "/img", slots.slot_dir(0), hashlib.sha256(img).digest())
    remove_tree(slots.root + "/img")
    slots.save(State(0, 0, 0, seq))


# ---- a RAM flash chip for MicroPython, with power cuts ----------------------------

BLOCK = 512  # a small erase block, so an update spans many of them
BLOCKS = 96
MOUNT = "/flash"
IOCTL_BLOCK_COUNT = 4  # block-device protocol (MicroPython docs, "vfs" / block devices)
IOCTL_BLOCK_SIZE = 5
IOCTL_BLOCK_ERASE = 6
ERASED = b"\xff" * BLOCK


class PowerCut(Exception):
    pass


class Flash:
    """The flash chip's cells: they outlive power cycles; ``writes`` counts programs and erases."""

    def __init__(self, mount=MOUNT):
        self.mount = mount
        self.data = bytearray(BLOCKS * BLOCK)
        self.cut_at = 0  # 0: never
        self.writes = 0
        self.device = None


class CuttingBlockDevice:
    """The flash as seen during one power cycle.

    The k-th program or erase writes half its bytes and raises PowerCut; from
    then on this device is dead and every read or write raises it again, so
    nothing of the lost mount (not even file objects the garbage collector
    closes later) touches the cells the next power cycle mounts. MicroPython's
    LittleFS turns an exception in a block device into an OSError, so the
    caller sees OSError or PowerCut; ``dead`` tells it the power went.
    """

    def __init__(self, flash):
        self.flash = flash
        self.dead = False
        self.cut = PowerCut()  # raised from a dead device without allocating

    def readblocks(self, block, buf, offset=0):
        if self.dead:
            raise self.cut
        start = block * BLOCK + offset
        buf[:] = self.flash.data[start:start + len(buf)]

    def _write(self, start, buf):
        if self.dead:
            raise self.cut
        flash = self.flash
        flash.writes += 1
        if flash.writes == flash.cut_at:
            self.dead = True
            half = len(buf) // 2
            flash.data[start:start + half] = buf[:half]
            raise self.cut
        flash.data[start:start + len(buf)] = buf

    def writeblocks(self, block, buf, offset=0):
        self._write(block * BLOCK + offset, buf)

    def ioctl(self, op, arg):
        if op == IOCTL_BLOCK_COUNT:
            return BLOCKS
        if op == IOCTL_BLOCK_SIZE:
            return BLOCK
        if op == IOCTL_BLOCK_ERASE:
            self._write(arg * BLOCK, ERASED)
        return 0


def power_up(flash):
    import vfs  # MicroPython only

    """Mount the flash as a module does at start, through a fresh device: nothing cached survives."""
    try:
        vfs.umount(flash.mount)
    except OSError:
        pass
    flash.device = CuttingBlockDevice(flash)
    vfs.mount(vfs.VfsLfs2(flash.device), flash.mount)


def provisioned(mount=MOUNT):
    """A RAM LittleFS volume at ``mount`` (MicroPython), provisioned with image 1; returns its Flash."""
    import vfs

    flash = Flash(mount)
    vfs.VfsLfs2.mkfs(CuttingBlockDevice(flash))
    power_up(flash)
    provision(mount, image(1), 1)
    flash.writes = 0
    return flash


def fresh_flash(mount=MOUNT):
    """A provisioned flash directory: a RAM LittleFS volume on MicroPython, a temp dir on CPython."""
    try:
        import tempfile
    except ImportError:
        provisioned(mount)
        return mount
    path = tempfile.mkdtemp() + "/flash"
    provision(path, image(1), 1)
    return path


def raises(error, function, *args):
    """The ``error`` that ``function(*args)`` raises; AssertionError if it raises none."""
    try:
        function(*args)
    except error as e:
        return e
    raise AssertionError("%s not raised" % error.__name__)


def kept_intact(flash):
    return all(read_file(flash + "/" + name) == data for name, data in KEEP.items())


def running_version(slot_dir):
    return int(read_file(slot_dir + "/app.py").split(b"=")[1])


def power_on(flash, the_bundle, joined=True, corrupt=(), drop=()):
    """One start of the module: boot, then either confirm a trial image or take the update further.

    Returns the booted slot directory. ``corrupt`` and ``drop``: page indexes
    damaged or lost in transit on this start.
    """
    slots = Slots(flash)
    slot_dir = slots.boot()
    assert slots.slot_intact(slots.load().active), "booted a damaged slot"
    assert kept_intact(flash), "registers, keys or archive changed"
    updater = Updater(flash, VENDOR_KEY, manifest.CLASS_D100FC)
    if slots.load().trial:
        if read_file(flash + "/registers.bin") and joined:  # the self-test
            updater.confirm()
        return slot_dir
    envelope, table, img = the_bundle
    try:
        m = updater.offer(envelope, BATTERY_MV)
    except ProtocolError:
        return slot_dir  # refused, or already installed
    updater.put_table(table)
    for i in updater.missing_pages():
        page = img[i * m.page_size:(i + 1) * m.page_size]
        if i in drop:
            continue
        if i in corrupt:
            page = bytes([page[0] ^ 1]) + page[1:]
        try:
            updater.put_page(i, page)
        except ProtocolError:
            pass  # a bad page is refused and asked for again
    if not updater.missing_pages():
        updater.install()
    return slot_dir


def update(flash, the_bundle, starts=8):
    """Power the module on until it runs the bundle's image confirmed (or ``starts`` runs out)."""
    seq = manifest.Manifest.decode(the_bundle[0][:manifest.MANIFEST_LEN]).seq
    for _ in range(starts):
        power_on(flash, the_bundle)
        state = Slots(flash).load()
        if state.seq == seq and not state.trial:
            return True
    return False
