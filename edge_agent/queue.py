"""The agent's durable queue of batches: append-only segment files on disk.

Each queued batch is one record in a segment file ``seg-<n>.q``::

    magic "BQ" | length u32 | crc32 u32 | boot u32 | seq u64 | link_boot u32 | link_upto u32
    | created u32 | records u32 | flags u8 | payload (the batch's unsigned CBOR)

The CRC-32 covers everything after itself. Records are only ever appended.

fsync policy: every append is one group commit (a batch of up to
``batch_records`` readings gathered for at most ``flush_s``): write, flush,
fsync, and only then is the serial link acknowledged, so a power cut loses
nothing the concentrator does not still hold. New segment files and renames
are followed by an fsync of the directory. Acknowledgement marks
(``acked.log``) are not fsynced: a lost mark costs one re-send, which central
answers with "duplicate".

Recovery (``open``) scans every segment. A record that fails its length,
magic or CRC check at the end of the newest segment is a torn write and is cut
off. A bad record anywhere else is corruption: its bytes are copied to
``quarantine/`` and counted, and the scan resynchronises on the next valid
record, so one bad sector costs only the batch it hit.

Bounded: the segments never exceed ``max_bytes``. When an append would pass
it, the queue makes room without ever dropping the newest reading of any
(meter, register) — cumulative registers make older readings of the same
register detail, not energy:

1. thin old segments to daily detail: keep readings at midnight UTC and the
   newest reading of each (meter, register); events are always kept;
2. then keep only the newest reading of each (meter, register) and events;
3. if still no room, refuse the append (``append`` returns None). The agent
   then stops acknowledging the serial link, and the concentrator holds the
   data and backfills hours from the modules' archives when room returns.

Every step is counted (``thinned_records``, ``refused_appends``) and shown in
the status topic. A write that fails below the budget (ENOSPC: the disk is
shared with others) is refused at once, without thinning: holding the link is
lossless while the concentrator and the modules' archives keep the data.
"""

import logging
import os
import struct
import time
import zlib
from collections import OrderedDict

from protocol.batch import Batch, decode_payload

log = logging.getLogger("balans.agent.queue")

MAGIC = b"BQ"
HEADER = struct.Struct("<2sIIIQIIIIB")
CRC_FROM = 10  # the CRC covers the header from this offset (after magic, length, crc) and the payload
MAX_PAYLOAD = 16 << 20  # a length above this is corruption, not a batch
F_THIN_DAILY = 0x01
F_THIN_LATEST = 0x02
DAY_S = 86400


class QueueError(Exception):
    """The queue directory cannot be used (permissions, not a directory)."""


class Entry:
    """Where one queued batch lives, and what the sender needs to know without reading it."""

    __slots__ = ("segment", "offset", "size", "boot", "seq", "link", "created", "records", "flags")

    def __init__(self, segment, offset, size, boot, seq, link, created, records, flags):
        self.segment = segment
        self.offset = offset
        self.size = size
        self.boot = boot
        self.seq = seq
        self.link = link
        self.created = created
        self.records = records
        self.flags = flags

    @property
    def key(self):
        return (self.boot, self.seq)


class Segment:
    def __init__(self, number, path):
        self.number = number
        self.path = path
        self.size = 0
        self.entries = []  # every record in the file, acknowledged or not
        self.acked = 0


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data, mode=0o644):
    """Replace ``path`` with ``data``: a torn write leaves the old file, never half a new one."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the umask, or an older tmp file, must not loosen it
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def _encode(entry, payload):
    head = HEADER.pack(MAGIC, len(payload), 0, entry.boot, entry.seq, entry.link[0], entry.link[1],
                       entry.created, entry.records, entry.flags)
    crc = zlib.crc32(payload, zlib.crc32(head[CRC_FROM:]))
    return head[:6] + struct.pack("<I", crc) + head[CRC_FROM:] + payload


def _parse(buf, pos):
    """Return (fields, payload memoryview, next position) of a valid record at ``pos``, or None."""
    if len(buf) - pos < HEADER.size or buf[pos:pos + 2] != MAGIC:
        return None
    fields = HEADER.unpack_from(buf, pos)
    length, crc = fields[1], fields[2]
    end = pos + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(buf):
        return None
    view = memoryview(buf)
    if zlib.crc32(view[pos + HEADER.size:end], zlib.crc32(view[pos + CRC_FROM:pos + HEADER.size])) != crc:
        return None
    return fields, view[pos + HEADER.size:end], end


class DurableQueue:
    def __init__(self, directory, max_bytes, segment_bytes=4 << 20, clock=time.time):
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.clock = clock
        self.segments = []
        self.entries = OrderedDict()  # (boot, seq) -> Entry, unacknowledged, oldest first
        self.link_cursor = (0, 0)  # (concentrator boot, records below this index are queued)
        self.bytes = 0
        self.thinned_records = 0
        self.corrupt_records = 0
        self.torn_tails = 0
        self.refused_appends = 0
        self.write_errors = 0
        self._active = None
        self._file = None
        self._latest = None  # (meter, register) -> newest ts ever queued, built on first need
        self._acked_log = None

    # ---- open and recover ---------------------------------------------------------
    def open(self):
        try:
            os.makedirs(os.path.join(self.dir, "quarantine"), exist_ok=True)
        except OSError as e:
            raise QueueError("cannot use queue directory %s: %s" % (self.dir, e)) from None
        acked = self._read_acked()
        self.link_cursor = self._read_cursor()
        if not os.path.exists(os.path.join(self.dir, "link.state")):
            write_atomic(os.path.join(self.dir, "link.state"), b"\0" * 12)  # created now, overwritten in place
        names = sorted(n for n in os.listdir(self.dir) if n.startswith("seg-") and n.endswith(".q"))
        for i, name in enumerate(names):
            seg = Segment(int(name[4:-2]), os.path.join(self.dir, name))
            self._scan(seg, last=(i == len(names) - 1))
            for e in seg.entries:
                if e.key in acked:
                    seg.acked += 1
                else:
                    self.entries[e.key] = e
                if e.link > self.link_cursor:
                    self.link_cursor = e.link
            self.segments.append(seg)
            self.bytes += seg.size
        for seg in list(self.segments):
            if seg.acked == len(seg.entries):
                self._delete(seg)
        self._rewrite_acked()
        if self.segments:
            self._active = self.segments[-1]
            self._file = open(self._active.path, "ab", buffering=0)
        return self

    def _scan(self, seg, last):
        with open(seg.path, "rb") as f:
            buf = f.read()
        pos = 0
        while pos < len(buf):
            rec = _parse(buf, pos)
            if rec is not None:
                fields, _, end = rec
                _, length, _, boot, seq, lboot, lupto, created, nrec, flags = fields
                seg.entries.append(Entry(seg, pos, end - pos, boot, seq, (lboot, lupto), created, nrec, flags))
                pos = end
                continue
            nxt = self._resync(buf, pos + 1)
            if nxt is None and last:
                self.torn_tails += 1
                with open(seg.path, "r+b") as f:
                    f.truncate(pos)
                    os.fsync(f.fileno())
                buf = buf[:pos]
                break
            bad_end = len(buf) if nxt is None else nxt
            self.corrupt_records += 1
            with open(os.path.join(self.dir, "quarantine", "seg-%012d-at-%d.bad" % (seg.number, pos)), "wb") as q:
                q.write(buf[pos:bad_end])
            pos = bad_end
        seg.size = len(buf)

    @staticmethod
    def _resync(buf, pos):
        while True:
            pos = buf.find(MAGIC, pos)
            if pos < 0:
                return None
            if _parse(buf, pos) is not None:
                return pos
            pos += 1

    def _read_acked(self):
        path = os.path.join(self.dir, "acked.log")
        acked = set()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return acked
        for off in range(0, len(data) - 11, 12):
            acked.add(struct.unpack_from("<IQ", data, off))
        return acked

    def _rewrite_acked(self):
        """Keep only marks of records still on disk. Marks only save re-sends: on a full disk, skip it."""
        keys = [e.key for seg in self.segments for e in seg.entries if e.key not in self.entries]
        path = os.path.join(self.dir, "acked.log")
        try:
            write_atomic(path, b"".join(struct.pack("<IQ", *k) for k in keys))
        except OSError:
            if self._acked_log:
                return
        if self._acked_log:
            self._acked_log.close()
        self._acked_log = open(path, "ab")

    def _read_cursor(self):
        try:
            with open(os.path.join(self.dir, "link.state"), "rb") as f:
                data = f.read(12)
        except FileNotFoundError:
            return (0, 0)
        if len(data) == 12 and zlib.crc32(data[:8]) == struct.unpack_from("<I", data, 8)[0]:
            return struct.unpack_from("<II", data)
        return (0, 0)  # the concentrator's HELLO then tells us where its records start

    def _save_cursor(self):
        """Overwrite link.state in place (12 bytes, one sector): needs no free space on a full disk."""
        data = struct.pack("<II", *self.link_cursor)
        data += struct.pack("<I", zlib.crc32(data))
        try:
            with open(os.path.join(self.dir, "link.state"), "r+b") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.write_errors += 1  # an older cursor only makes the concentrator's HELLO correct it

    # ---- append -----------------------------------------------------------------------
    def append(self, batch, link_cursor=None):
        """Make ``batch`` durable (fsync). Return its Entry, or None when full (nothing written)."""
        payload = batch.to_cbor()
        entry = Entry(None, 0, 0, batch.boot, batch.seq, link_cursor or self.link_cursor, int(self.clock()),
                      len(batch.records), 0)
        data = _encode(entry, payload)
        if self.bytes + len(data) > self.max_bytes and not self._make_room(len(data)):
            self.refused_appends += 1
            return None
        try:
            self._write(entry, data)
        except OSError as e:
            # ENOSPC below the budget: the disk is shared and may free up; holding the link
            # loses nothing (the concentrator and the modules' archives keep the data), thinning would
            self.write_errors += 1
            self.refused_appends += 1
            log.error("cannot append to the queue: %s", e)
            return None
        self.entries[entry.key] = entry
        self.link_cursor = entry.link
        if self._latest is not None:
            self._note_latest(batch.records)
        return entry

    def _write(self, entry, data):
        if self._active is None or self._active.size >= self.segment_bytes:
            self._rotate()
        seg = self._active
        fd = self._file.fileno()
        try:
            view = memoryview(data)
            while view:  # a write can be short (ENOSPC part-way) without raising
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, seg.size)  # leave no partial record behind
            raise
        entry.segment, entry.offset, entry.size = seg, seg.size, len(data)
        seg.entries.append(entry)
        seg.size += len(data)
        self.bytes += len(data)

    def _rotate(self):
        if self._file:
            self._file.close()
        number = self.segments[-1].number + 1 if self.segments else 1
        seg = Segment(number, os.path.join(self.dir, "seg-%012d.q" % number))
        self._file = open(seg.path, "ab", buffering=0)  # unbuffered: a failed write leaves nothing pending
        _fsync_dir(self.dir)
        self.segments.append(seg)
        self._active = seg

    # ---- read and acknowledge ---------------------------------------------------------
    def read(self, entry):
        """The batch payload of ``entry`` (re-checked against its CRC)."""
        with open(entry.segment.path, "rb") as f:
            f.seek(entry.offset)
            buf = f.read(entry.size)
        rec = _parse(buf, 0)
        if rec is None:
            raise OSError("queued batch %r failed its CRC on re-read" % (entry.key,))
        return bytes(rec[1])

    def drop_corrupt(self, key):
        """A queued batch failed its CRC when read back (the medium decayed): count it and let it go."""
        self.corrupt_records += 1
        entry = self.entries[key]
        with open(os.path.join(self.dir, "quarantine", "batch-%d-%d.bad" % key), "wb") as q:
            with open(entry.segment.path, "rb") as f:
                f.seek(entry.offset)
                q.write(f.read(entry.size))
        self.ack(key)

    def ack(self, key):
        """Central has committed batch ``key``: forget it. False if it was not queued."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        try:
            self._acked_log.write(struct.pack("<IQ", *key))
            self._acked_log.flush()
        except OSError:
            pass  # a lost mark costs one re-send, answered "duplicate"
        seg = entry.segment
        seg.acked += 1
        if seg.acked == len(seg.entries):
            self._delete(seg)
        return True

    def _delete(self, seg):
        self._save_cursor()  # the link cursor must outlive the records that carried it
        if seg is self._active:
            self._file.close()
            self._file = None
            self._active = None
        os.remove(seg.path)
        self.segments.remove(seg)
        self.bytes -= seg.size
        self._rewrite_acked()

    def oldest_created(self):
        for e in self.entries.values():
            return e.created
        return None

    def records(self):
        return sum(e.records for e in self.entries.values())

    def close(self):
        for f in (self._file, self._acked_log):
            if f:
                f.close()
        self._file = self._acked_log = None

    # ---- when full --------------------------------------------------------------------
    def _note_latest(self, records):
        latest = self._latest
        for r in records:
            k = (r.meter_id, r.register)
            if latest.get(k, -1) < r.ts:
                latest[k] = r.ts

    def _make_room(self, need):
        if self._latest is None:
            self._latest = {}
            for e in self.entries.values():
                self._note_latest(decode_payload(self.read(e)).records)
        if self._active is not None and self._active.entries:
            self._file.close()
            self._file = None
            self._active = None  # the next append starts a new segment; this one may be thinned
        for flag in (F_THIN_DAILY, F_THIN_LATEST):
            for seg in list(self.segments):
                if seg.entries and any(not (e.flags & flag) for e in seg.entries):
                    try:
                        self._thin(seg, flag)
                    except OSError:
                        self.write_errors += 1  # not even room for the thinner copy
                        return False
                    if self.bytes + need <= self.max_bytes:
                        return True
        return self.bytes + need <= self.max_bytes

    def _keep(self, record, flag):
        newest = self._latest.get((record.meter_id, record.register)) == record.ts
        return newest or (flag == F_THIN_DAILY and record.ts % DAY_S == 0)

    def _thin(self, seg, flag):
        """Rewrite ``seg`` with thinned batches (same keys), atomically."""
        out = bytearray()
        kept = []
        for e in seg.entries:
            if e.key not in self.entries:
                continue  # acknowledged: not worth carrying over
            batch = decode_payload(self.read(e))
            records = [r for r in batch.records if self._keep(r, flag)]
            self.thinned_records += len(batch.records) - len(records)
            thin = Batch(batch.conc, batch.boot, batch.seq, records, batch.events)
            e.flags |= flag | (F_THIN_DAILY if flag == F_THIN_LATEST else 0)
            e.records = len(records)
            data = _encode(e, thin.to_cbor())
            e.offset, e.size = len(out), len(data)
            out += data
            kept.append(e)
        write_atomic(seg.path, bytes(out))
        self.bytes += len(out) - seg.size
        seg.size = len(out)
        seg.entries = kept
        seg.acked = 0
        if not kept:
            self._delete(seg)
