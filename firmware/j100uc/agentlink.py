"""The concentrator's end of the serial line to its edge agent (protocol/link.py).

Go-back-N over the record ring: records are sent from ``sent`` up to what the
agent's credit allows; the agent's cumulative ACK releases them; with no
progress for RESEND_MS the MCU goes back to the first unacknowledged record.
Until the agent acknowledges this boot, HELLO (boot, oldest record held) is
repeated every HELLO_MS.
"""

from protocol import link
from protocol.compat import const

HELLO_MS = const(2000)  # re-announce a boot until the agent answers
RESEND_MS = const(3000)  # no progress for this long: go back to the first unacknowledged record
FRAMES_PER_PUMP = const(16)  # 16 x 250 bytes per tick keeps a 115200 baud line busy, not flooded
TICKS_MASK = const(0x3FFFFFFF)  # ticks_ms wraps at 2**30 on MicroPython boards


def elapsed(now, then):
    return (now - then) & TICKS_MASK


class AgentLink:
    def __init__(self, hal, boot, ring):
        self.hal = hal
        self.boot = boot
        self.ring = ring
        self.reader = link.Reader()
        self.sent = 0  # next record index to send
        self.credit = 0  # records the agent will take beyond what it acknowledged
        self.agent_seen = False  # the agent acknowledged this boot
        self._last_hello = None
        self._last_progress = 0
        self._frame = bytearray(10 + link.MAX_RECORDS * link.RECORD_LEN)
        self.frames_out = 0
        self.resends = 0

    def pump(self, now_ms):
        """Read the line, handle ACKs, send what the window allows; return other frames (type, fields, tail)."""
        others = []
        data = self.hal.link_read()
        if data:
            for body in self.reader.feed(data):
                try:
                    ftype, fields, tail = link.unpack(body)
                except ValueError:
                    self.reader.bad_frames += 1
                    continue
                if ftype == link.L_ACK:
                    self._on_ack(fields, now_ms)
                else:
                    others.append((ftype, fields, tail))
        if not self.agent_seen:
            if self._last_hello is None or elapsed(now_ms, self._last_hello) >= HELLO_MS:
                self._last_hello = now_ms
                self.write(link.pack(link.L_HELLO, self.boot, self.ring.base))
            return others
        ring = self.ring
        if self.sent > ring.base and elapsed(now_ms, self._last_progress) >= RESEND_MS:
            self.sent = ring.base
            self.resends += 1
            self._last_progress = now_ms
        limit = min(ring.end, ring.base + self.credit)
        frames = 0
        while self.sent < limit and frames < FRAMES_PER_PUMP:
            n = min(link.MAX_RECORDS, limit - self.sent)
            self._send_records(self.sent, n)
            if self.sent == ring.base:
                self._last_progress = now_ms
            self.sent += n
            frames += 1
        return others

    def _on_ack(self, fields, now_ms):
        boot, upto, credit = fields
        if boot != self.boot or upto < self.ring.base:
            # the agent talks of another boot, or lost records we released: say where we stand
            self.agent_seen = False
            return
        self.agent_seen = True
        if upto > self.ring.base:
            self._last_progress = now_ms
        self.ring.release(upto)
        self.credit = credit
        if self.sent < self.ring.base:
            self.sent = self.ring.base

    def _send_records(self, first, n):
        f = self._frame
        f[0] = link.L_RECORDS
        f[1:5] = self.boot.to_bytes(4, "little")
        f[5:9] = first.to_bytes(4, "little")
        f[9] = n
        end = self.ring.copy_into(first, n, f, 10)
        self.write(memoryview(f)[:end])

    def write(self, body):
        self.hal.link_write(link.encode(body))
        self.frames_out += 1

    def idle(self):
        """True when nothing waits to be sent or acknowledged."""
        return self.agent_seen and self.ring.held() == 0
