"""An update hop by hop in radio frames: fragments down, one "need" answer up.

A parent sends the update as units: the envelope (part ENVELOPE), the
page-hash table in pages (part TABLE) and the image pages (part IMAGE), each
unit in fragments of FRAGMENT bytes, one per T_OTA frame (table units are
UNIT bytes; image units are the manifest's pages)::

    FRAGMENT payload  <BHBHB + data: type 0x30, session, part, index, fragment, up to 32 bytes
    NEED payload      <BHBHB:        type 0x31, session, part, index, status

``session`` is the update's seq (low 16 bits). A child answers with the unit
it needs next (DLMS image transfer's "first not transferred block"), DONE, or
REFUSED (signature, class, seq or battery). Each module checks a page against
the signed table before it keeps it, and sends on only what it kept, so a
corrupted or forged page stops at the first hop. Table pages are passed on
as they come (only the whole table can be checked); a bad one is caught by
every module when its table completes, and asked for again. What a module keeps is in
flash (ota/download.py): after a power cut it answers NEED with what is still
missing. The envelope is held in RAM until complete and the table until
checked; a power cut loses only those partial units.
"""

import struct

from firmware.common.ota.manifest import ENVELOPE_LEN, PAGE_HASH_LEN
from protocol.compat import const
from protocol.errors import ProtocolError

FRAGMENT_MSG = const(0x30)
NEED_MSG = const(0x31)
ENVELOPE = const(0)
TABLE = const(1)
IMAGE = const(2)
NEEDS = const(0)  # status: send (part, index)
DONE = const(1)  # has every page: ready to install
REFUSED = const(2)  # will not take this update
FRAGMENT = const(32)  # 7-byte header + 32 = 39: a full frame payload (protocol/frame.py PAYLOAD_MAX)
UNIT = const(256)  # bytes per table or image page; the envelope is one unit of ENVELOPE_LEN
_HEAD = "<BHBHB"
_HEAD_LEN = const(7)


def fragments(session, part, index, data):
    """The FRAGMENT payloads that carry one unit."""
    return [struct.pack(_HEAD, FRAGMENT_MSG, session, part, index, i // FRAGMENT) + data[i:i + FRAGMENT]
            for i in range(0, len(data), FRAGMENT)]


def need(session, part, index, status):
    return struct.pack(_HEAD, NEED_MSG, session, part, index, status)


def parse(payload):
    """(type, session, part, index, fragment-or-status, data) of a T_OTA payload; ProtocolError if not one."""
    if len(payload) < _HEAD_LEN or payload[0] not in (FRAGMENT_MSG, NEED_MSG) or payload[3] > IMAGE:
        raise ProtocolError("not an OTA transfer message")
    kind, session, part, index, sub = struct.unpack_from(_HEAD, payload, 0)
    data = payload[_HEAD_LEN:]
    if (kind == NEED_MSG and data) or (kind == FRAGMENT_MSG and not 0 < len(data) <= FRAGMENT):
        raise ProtocolError("OTA %s message of %d bytes" % ("need" if kind == NEED_MSG else "fragment", len(payload)))
    return kind, session, part, index, sub, data


class Source:
    """The concentrator's copy of a whole bundle: every unit, for sending."""

    def __init__(self, envelope, table, image, manifest):
        self.session = manifest.seq & 0xFFFF
        self.page_size = manifest.page_size
        self._parts = (envelope, table, image)

    def unit(self, part, index):
        data = self._parts[part]
        if part == ENVELOPE:
            return data if index == 0 else None
        size = self.page_size if part == IMAGE else UNIT
        return data[index * size:(index + 1) * size] or None


class Receiver:
    """A module's end of a transfer, over its Updater; also the source its children are sent from."""

    def __init__(self, updater, battery_mv):
        self.updater = updater
        self.battery_mv = battery_mv  # a function: the battery is read when the offer completes
        self.refused = None
        self._unit = None  # (part, index) being assembled
        self._buf = bytearray(UNIT)
        self._have = 0  # fragment bits of that unit
        self._table = None
        d = updater.download
        self.session = d.manifest.seq & 0xFFFF if d.manifest is not None else None

    def on_fragment(self, session, part, index, number, data):
        """Take one fragment; returns the unit it completed, if any, as (part, index)."""
        if self.refused is not None and session == self.session:
            return None
        if session != self.session:
            if part != ENVELOPE:
                return None  # a new update starts with its envelope
            self.session, self.refused, self._table, self._unit = session, None, None, None
        size = self._size(part, index)
        if size is None or number * FRAGMENT >= size or self.unit(part, index) is not None:
            return None
        if self._unit != (part, index):
            self._unit, self._have = (part, index), 0
        start = number * FRAGMENT
        self._buf[start:start + len(data)] = data
        self._have |= 1 << number
        if self._have != (1 << ((size + FRAGMENT - 1) // FRAGMENT)) - 1:
            return None
        self._unit = None
        self._complete(part, index, bytes(self._buf[:size]))
        return part, index

    def _size(self, part, index):
        m = self.updater.download.manifest
        if part == ENVELOPE:
            return ENVELOPE_LEN if index == 0 else None
        if m is None or (m.seq & 0xFFFF) != self.session:
            return None
        if part == IMAGE:
            return m.page_length(index) if index < m.pages else None
        size = min(UNIT, m.pages * PAGE_HASH_LEN - index * UNIT)
        return size if size > 0 else None

    def _complete(self, part, index, data):
        u = self.updater
        try:
            if part == ENVELOPE:
                u.offer(data, self.battery_mv())
            elif part == TABLE:
                m = u.download.manifest
                if self._table is None:
                    self._table = bytearray(m.pages * PAGE_HASH_LEN)
                    self._table_have = 0
                self._table[index * UNIT:index * UNIT + len(data)] = data
                self._table_have |= 1 << index
                if self._table_have == (1 << ((len(self._table) + UNIT - 1) // UNIT)) - 1:
                    u.put_table(self._table)
                    self._table = None
            else:
                u.put_page(index, data)
        except ProtocolError as e:
            if part == ENVELOPE:
                self.refused = str(e)
            elif part == TABLE:
                self._table = None  # a bad table: ask for all of it again

    def unit(self, part, index):
        """The unit's bytes if this module holds it checked, else None (what it can send on)."""
        d = self.updater.download
        if d.manifest is None or (d.manifest.seq & 0xFFFF) != self.session:
            return None
        if part == ENVELOPE:
            return d.envelope if index == 0 else None
        if part == TABLE:  # a relay passes table pages on before it has all; each child checks the whole
            if d.table is not None:
                return d.table[index * UNIT:(index + 1) * UNIT]
            if self._table is not None and self._table_have & (1 << index):
                return bytes(self._table[index * UNIT:(index + 1) * UNIT])
            return None
        if index >= d.manifest.pages or d.table is None or d.is_missing(index):
            return None
        return d.read_page(index)

    def need(self):
        """The NEED payload for the parent: the first unit missing, DONE or REFUSED."""
        session = self.session or 0
        if self.refused is not None:
            return need(session, ENVELOPE, 0, REFUSED)
        d = self.updater.download
        if d.manifest is None or (d.manifest.seq & 0xFFFF) != self.session:
            return need(session, ENVELOPE, 0, NEEDS)
        if d.table is None:
            have = self._table_have if self._table is not None else 0
            index = 0
            while have & (1 << index):
                index += 1
            return need(session, TABLE, index, NEEDS)
        missing = d.missing_pages()
        return need(session, IMAGE, missing[0], NEEDS) if missing else need(session, IMAGE, 0, DONE)
