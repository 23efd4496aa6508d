"""Hourly archive on LittleFS: every channel's registers at the start of every hour, 45+ days.

One file per UTC day (named by its day number) takes one 68-byte record per
hour, appended; whole old files are removed, so nothing is rewritten in place.
Records carry their own hour, so a gap (module off, clock jump) costs nothing.
Backfill rebuilds HOURLY messages from them, deltas included.
"""

import os
import struct

from protocol import messages
from protocol.compat import const

KEEP_DAYS = const(47)  # 45 full days served, plus today and the day that is ending
RECORD = "<IHBB15I"  # hour, flags, battery byte, tariff byte, 3 channels x 5 registers
RECORD_SIZE = const(68)
HOURS_PER_DAY = const(24)
DELTA_MAX = const(0xFFFE)  # larger deltas do not fit HOURLY: sent as unknown


class Archive:
    def __init__(self, directory):
        self.dir = directory + "/arch"
        try:
            os.mkdir(self.dir)
        except OSError:
            pass  # already there
        self._record = bytearray(RECORD_SIZE)

    def append(self, hour, flags, battery, tariff, registers):
        """Archive the registers (3 lists of 5) at the start of ``hour``."""
        day = hour // HOURS_PER_DAY
        path = "%s/%d" % (self.dir, day)
        new_day = True
        try:
            os.stat(path)
            new_day = False
        except OSError:
            pass
        with open(path, "ab") as f:
            f.write(struct.pack(RECORD, hour, flags, battery, tariff, *(registers[0] + registers[1] + registers[2])))
        if new_day:
            self._prune(day)

    def _prune(self, today):
        for name in os.listdir(self.dir):
            if name.isdigit() and int(name) <= today - KEEP_DAYS:
                os.remove(self.dir + "/" + name)

    def record(self, hour):
        """(flags, battery, tariff, registers as a 15-tuple) archived for ``hour``, or None."""
        found = None
        try:
            with open("%s/%d" % (self.dir, hour // HOURS_PER_DAY), "rb") as f:
                while f.readinto(self._record) == RECORD_SIZE:  # one record at a time: little RAM
                    if struct.unpack_from("<I", self._record, 0)[0] == hour:
                        found = struct.unpack(RECORD, self._record)  # the last copy wins
        except OSError:
            return None
        return None if found is None else (found[1], found[2], found[3], found[4:])

    def hourly(self, hour):
        """The HOURLY payload for ``hour`` rebuilt from the archive, or None if it is not there."""
        r = self.record(hour)
        if r is None:
            return None
        totals = _totals(r[3])
        before = [_totals(x[3]) if x else None for x in (self.record(hour - 1), self.record(hour - 2))]
        deltas = []
        for back in range(2):
            newer = totals if back == 0 else before[0]
            older = before[back]
            for ch in range(3):
                d = messages.DELTA_UNKNOWN
                if newer is not None and older is not None and 0 <= newer[ch] - older[ch] <= DELTA_MAX:
                    d = newer[ch] - older[ch]
                deltas.append(d)
        return messages.Hourly(hour, r[0], r[1], r[2], totals, deltas).encode()

    def hours(self):
        """Every archived hour, oldest first (for tests and tools)."""
        found = []
        for name in sorted(os.listdir(self.dir)):
            if name.isdigit():
                day = int(name)
                for h in range(day * HOURS_PER_DAY, (day + 1) * HOURS_PER_DAY):
                    if self.record(h) is not None:
                        found.append(h)
        return sorted(found)


def _totals(regs):
    return tuple(sum(regs[ch * 5:ch * 5 + 5]) for ch in range(3))
