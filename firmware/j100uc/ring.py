"""Records the concentrator holds until the agent has them on disk.

A fixed ring of link records (protocol.link.RECORD_LEN bytes each) in one
preallocated bytearray: pushing never allocates, and the RAM it takes is
decided at boot. Records are numbered by a 32-bit index that counts up from 0
at each boot; ``base`` is the oldest record still held, ``end`` the next index.
The agent acknowledges cumulatively (all < upto), which releases records.
"""

import struct

from protocol.link import RECORD_FMT, RECORD_LEN, READING_FMT, K_READING


class RecordRing:
    def __init__(self, capacity):
        self.capacity = capacity
        self._buf = bytearray(capacity * RECORD_LEN)
        self.base = 0
        self.end = 0

    def held(self):
        return self.end - self.base

    def free(self):
        return self.capacity - (self.end - self.base)

    def push(self, kind, addr, channel, code, ts, value):
        """Append one record; False (nothing stored) when the ring is full."""
        if self.end - self.base >= self.capacity:
            return False
        off = (self.end % self.capacity) * RECORD_LEN
        fmt = READING_FMT if kind == K_READING else RECORD_FMT
        struct.pack_into(fmt, self._buf, off, kind, addr, channel, code, ts, value)
        self.end += 1
        return True

    def release(self, upto):
        """Forget records with index < upto (the agent has them)."""
        if upto > self.end:
            upto = self.end
        if upto > self.base:
            self.base = upto

    def copy_into(self, first, n, dst, dst_off):
        """Copy records first..first+n-1 into ``dst`` at ``dst_off`` (they must be held)."""
        for i in range(first, first + n):
            off = (i % self.capacity) * RECORD_LEN
            dst[dst_off:dst_off + RECORD_LEN] = self._buf[off:off + RECORD_LEN]
            dst_off += RECORD_LEN
        return dst_off
