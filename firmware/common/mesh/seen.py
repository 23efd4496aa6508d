"""The highest frame counter taken from each origin, kept in flash: a reset must not reopen the replay window.

With the window only in RAM, a station that has just restarted takes any authentic
frame once more, however old. A module would then act on a recorded command replayed
to it after a battery change or an update's reboot (a RELAY open, a clock set months
back); a concentrator would take a stale report. On boot the window starts at what
flash kept: every counter up to it counts as seen.

A module is sent a few commands a day, so it writes each new highest counter before
acting (``hold_ms`` 0): a command survives a power cut at most unacted, never twice.
A concentrator takes frames from 240 modules all hour, so it writes at most every
``hold_ms``; what it took in that last stretch before a reset can be replayed once,
and central stores such a report only once (the batch's readings are idempotent).

File: (origin u16, counter u32) little-endian pairs, replaced whole (write, rename).
"""

import os
import struct

from protocol.frame import ReplayWindow

from firmware.common.mesh.clock import ticks_diff

_PAIR = "<HI"


class KeptWindow:
    def __init__(self, path, max_sources, hold_ms, now_ms):
        self.window = ReplayWindow(max_sources=max_sources)
        self._path = path
        self._hold_ms = hold_ms
        self._saved_at = now_ms
        self._dirty = False
        try:
            with open(path, "rb") as f:
                kept = f.read()
        except OSError:
            kept = b""
        for i in range(0, len(kept) - len(kept) % 6, 6):
            self.window.restore(*struct.unpack_from(_PAIR, kept, i))

    def accept(self, src, counter, now_ms):
        """Record (src, counter) as taken; raises ReplayError as ReplayWindow.accept does."""
        top = self.window.highest(src)
        self.window.accept(src, counter)
        if top is None or counter > top:
            self._dirty = True
        if self._dirty and ticks_diff(now_ms, self._saved_at) >= self._hold_ms:
            self.save(now_ms)

    def save(self, now_ms):
        out = bytearray()
        for src, top in self.window.tops():
            out += struct.pack(_PAIR, src, top)
        tmp = self._path + ".new"
        with open(tmp, "wb") as f:
            f.write(out)
        os.rename(tmp, self._path)  # atomic on LittleFS: the old table or the new, never half
        self._saved_at = now_ms
        self._dirty = False
