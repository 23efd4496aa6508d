"""Two application slots, the state record that picks one, trial boot and rollback.

This module is also the module's first boot stage: the flash tool installs a
compiled copy at the volume's root as ``otaboot`` (never updated over the air,
like MCUboot), so it imports nothing but os, struct and hashlib.

Layout under ``<flash>/ota/``::

    state           the record below, replaced atomically (temp file + rename)
    slot0/ slot1/   unpacked application files, plus .files (their order) and .sha256

State record (little-endian, STATE_LEN bytes)::

    magic b"OTAS", active slot, trial flag, boots in trial, format,
    seq of the active image, seq of the previous image, seq of the last image that failed its trial

A trial image runs under the watchdog; each start while on trial counts a
boot *before* the application runs, so a hang, crash or power cut before
``confirm`` counts as a failed boot. After MAX_TRIAL_BOOTS failed boots, or at
once if the slot's files no longer hash to its image digest, the next boot
returns to the previous slot. Nothing outside ``ota/`` is touched, so
registers, archive, events and keys survive every update and every rollback.
"""

import hashlib
import os
import struct

MAX_TRIAL_BOOTS = 3  # the first boot plus two retries: tolerates two power cuts before confirmation
STATE_MAGIC = b"OTAS"
STATE_FORMAT = 1
_STATE = "<4sBBBBIII"
STATE_LEN = 20
_CHUNK = 256  # read buffer when hashing files: small against a 64 KiB heap
FILES_INDEX = ".files"  # names of the slot's files in archive order
DIGEST_FILE = ".sha256"  # the image's SHA-256, from the signed manifest
ENVELOPE_FILE = ".envelope"  # in a slot installed over the air: its signed envelope and page-hash table,
TABLE_FILE = ".table"  # kept so that the module can serve the image it runs to others


# ---- small file helpers (LittleFS: a rename over an existing file is atomic) -------


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def make_dirs(path):
    built = ""
    for part in path.split("/"):
        if not part:
            continue
        built = built + "/" + part if built or path.startswith("/") else part
        if not exists(built):
            os.mkdir(built)


def remove_tree(path):
    if not exists(path):
        return
    if os.stat(path)[0] & 0x4000:  # S_IFDIR
        for name in os.listdir(path):
            remove_tree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


def write_atomic(path, data):
    """Replace ``path`` with ``data``: a power cut leaves either the old or the new content."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


# ---- the state record --------------------------------------------------------------


class State:
    """Which slot boots, whether it is on trial, and the sequence numbers that guard downgrades."""

    def __init__(self, active=0, trial=0, boots=0, seq=0, previous_seq=0, failed_seq=0):
        self.active = active
        self.trial = trial
        self.boots = boots
        self.seq = seq
        self.previous_seq = previous_seq
        self.failed_seq = failed_seq

    def encode(self):
        return struct.pack(_STATE, STATE_MAGIC, self.active, self.trial, self.boots, STATE_FORMAT,
                           self.seq, self.previous_seq, self.failed_seq)

    @classmethod
    def decode(cls, buf):
        if len(buf) != STATE_LEN:
            raise ValueError("OTA state record of %d bytes" % len(buf))
        magic, active, trial, boots, fmt, seq, previous_seq, failed_seq = struct.unpack(_STATE, buf)
        if magic != STATE_MAGIC or fmt != STATE_FORMAT or active > 1:
            raise ValueError("not an OTA state record")
        return cls(active, trial, boots, seq, previous_seq, failed_seq)

    def newest_refused(self):
        """An offered image must have a seq above this: no downgrade, no retry of a failed image."""
        return max(self.seq, self.failed_seq)


class Slots:
    """The two slots under ``<flash>/ota``."""

    def __init__(self, flash_dir):
        self.root = flash_dir.rstrip("/") + "/ota"

    def slot_dir(self, slot):
        return "%s/slot%d" % (self.root, slot)

    def load(self):
        """The saved state; a module that never had one boots slot 0, seq 0."""
        path = self.root + "/state"
        if not exists(path):
            return State()
        return State.decode(read_file(path))

    def save(self, state):
        make_dirs(self.root)
        write_atomic(self.root + "/state", state.encode())

    def boot(self):
        """Choose the slot to run now and return its directory (call once per start, before the app).

        Counts a trial boot, or returns to the previous slot when the trial has
        failed too often or the trial slot's files are damaged.
        """
        state = self.load()
        if state.trial:
            state.boots += 1
            if state.boots > MAX_TRIAL_BOOTS or not self.slot_intact(state.active):
                state = State(1 - state.active, 0, 0, state.previous_seq, state.previous_seq, state.seq)
            self.save(state)
        return self.slot_dir(state.active)

    def confirm(self):
        """The running trial image passed its self-test: keep it. Returns True if it was on trial."""
        state = self.load()
        if not state.trial:
            return False
        state.trial = 0
        state.boots = 0
        self.save(state)
        return True

    def switch(self, slot, seq):
        """Make ``slot`` (holding image ``seq``) the trial image for the next boot."""
        state = self.load()
        self.save(State(slot, 1, 0, seq, state.seq, state.failed_seq))

    def refuse(self, seq):
        """Never accept image ``seq`` (or an older one) again."""
        state = self.load()
        state.failed_seq = max(state.failed_seq, seq)
        self.save(state)

    def slot_intact(self, slot):
        """True if the slot's files, in archive order, hash to the digest of its image."""
        base = self.slot_dir(slot)
        try:
            names = read_file(base + "/" + FILES_INDEX).decode().split("\n")
            return archive_digest(base, names) == read_file(base + "/" + DIGEST_FILE)
        except (OSError, ValueError):
            return False


def archive_digest(base, names):
    """SHA-256 of the archive that holds files ``names`` under ``base`` (format: ota/archive.py)."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    for name in names:
        if not name:
            continue
        path = base + "/" + name
        size = os.stat(path)[6]
        encoded = name.encode()
        h.update(struct.pack("<B", len(encoded)) + encoded + struct.pack("<I", size))
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(buf if n == _CHUNK else buf[:n])
    return h.digest()
