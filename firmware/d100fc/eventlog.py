"""The event archive: the last SLOTS events in a ring of fixed 14-byte records in one file.

Slot = sequence number modulo SLOTS; a record is written in place, so the file
never grows. At boot the highest sequence number found is where the ring goes on.
A record: sequence (u32, 0 = empty), then the EVENT body (time, code, channel, value).
"""

import struct

from protocol.compat import const

SLOTS = const(128)  # issue floor: at least the last 100 events
RECORD = "<IIBBi"
RECORD_SIZE = const(14)


class EventLog:
    def __init__(self, directory):
        self.path = directory + "/events"
        self.seq = 0
        record = bytearray(RECORD_SIZE)
        slots = 0
        try:
            with open(self.path, "rb") as f:
                while f.readinto(record) == RECORD_SIZE:  # a record at a time: little RAM
                    slots += 1
                    self.seq = max(self.seq, struct.unpack_from("<I", record, 0)[0])
        except OSError:
            pass
        if slots != SLOTS:  # missing or spoilt: start an empty ring
            self.seq = 0
            with open(self.path, "wb") as f:
                for _ in range(SLOTS):
                    f.write(bytes(RECORD_SIZE))

    def add(self, time, code, channel, value):
        self.seq += 1
        with open(self.path, "r+b") as f:
            f.seek((self.seq % SLOTS) * RECORD_SIZE)
            f.write(struct.pack(RECORD, self.seq, time, code, channel, value))

    def latest(self, n=SLOTS):
        """Up to ``n`` newest events as (time, code, channel, value), oldest first."""
        with open(self.path, "rb") as f:
            data = f.read()
        found = []
        for pos in range(0, len(data), RECORD_SIZE):
            r = struct.unpack_from(RECORD, data, pos)
            if r[0] and r[0] > self.seq - min(n, SLOTS):
                found.append(r)
        found.sort()
        return [r[1:] for r in found]
