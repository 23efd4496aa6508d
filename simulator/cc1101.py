"""A CC1101 at its SPI pins, and the MCU peripherals around it: the real board HAL's test bench.

firmware/common/cc1101.py and firmware/common/boardhal.py run against it in tests
(tests/mpy/test_boardhal.py, on CPython and on MicroPython, so this file keeps to what both
run) and in ``balans bench radio`` (firmware/bench.py).

Time is one microsecond counter (Clock): each SPI transaction costs SPI_US, sleeping moves it
on. The chip keeps its registers, strobes its state machine as the datasheet says (SWRS061:
MARCSTATE, CCA on STX from RX, preamble while the TX FIFO is empty, FIFOs of 64 bytes with
overflow and underflow) and sends and receives frames on a schedule: ``incoming`` puts a frame
on its air at a time (on one channel, CHANNR, or on any), ``sent`` keeps what it transmitted. It also counts the microseconds its
receiver was on, which is what a battery pays.
"""

BYTE_US = 209  # 38.4 kBaud
SPI_US = 20  # one SPI transaction at 4 MHz with its chip-select set-up
SLEEP, IDLE, RX, TX = 0x00, 0x01, 0x0D, 0x13
CHANNR = 0x0A
RXFIFO_OVERFLOW, TXFIFO_UNDERFLOW = 0x11, 0x16


class Clock:
    """The ``time`` module's functions the board HAL uses, over one microsecond counter."""

    def __init__(self, unix=1780000000):
        self.us = 0
        self.rtc_base = unix  # RTC seconds at us == 0
        self.devices = []  # called with the new time whenever it moves

    def advance(self, us):
        self.us += us

    def ticks_us(self):
        return self.us & 0x3FFFFFFF

    def ticks_ms(self):
        return (self.us // 1000) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    def sleep_us(self, us):
        self.us += us

    def sleep_ms(self, ms):
        self.us += ms * 1000

    def time(self):
        return self.rtc_base + self.us // 1000000

    def gmtime(self, seconds):
        import time
        return time.gmtime(seconds)


class RTC:
    def __init__(self, clock):
        self.clock = clock
        self.set_to = None

    def datetime(self, fields):
        self.set_to = fields


class Pin:
    IRQ_FALLING = 2

    def __init__(self, value=1):
        self.level = value
        self.handler = None
        self.history = []  # (us, level) of writes, when a clock is given
        self.clock = None

    def __call__(self, value=None):
        if value is None:
            return self.level
        self.level = value
        if self.clock is not None:
            self.history.append((self.clock.us, value))

    def value(self, value=None):
        return self(value)

    def irq(self, trigger, handler, hard=False):
        self.trigger = trigger
        self.handler = handler

    def fall(self):
        """An edge from the meter's pulse output."""
        self.handler(self)


class ADC:
    def __init__(self, raw):
        self.raw = raw

    def read_u16(self):
        return self.raw


class WDT:
    def __init__(self):
        self.fed = 0

    def feed(self):
        self.fed += 1


class UART:
    def __init__(self):
        self.written = b""
        self.inbox = b""

    def write(self, data):
        self.written += bytes(data)
        return len(data)

    def read(self):
        data, self.inbox = self.inbox, b""
        return data or None


class Incoming:
    """A frame on the air: carrier from ``at``, sync after the preamble, bytes at 38.4 kBaud."""

    def __init__(self, frame, at, rssi, preamble_us, crc_ok, channel):
        self.frame = bytes(frame)
        self.channel = channel  # None: heard on any channel
        self.at = at
        self.sync = at + preamble_us + 8 * BYTE_US  # 4 preamble and 4 sync bytes
        self.end = self.sync + (len(frame) + 3) * BYTE_US  # length byte, frame, 2 CRC bytes
        self.rssi = rssi
        self.crc_ok = crc_ok


class CC1101Emu:
    def __init__(self, clock):
        self.clock = clock
        self.regs = bytearray(0x2F)
        self.patable = 0
        self.version = 0x14
        self.state = SLEEP
        self.rx_since = None  # when the receiver last went on
        self.rx_on_us = 0  # total time the receiver was on
        self.tx_fifo = bytearray()
        self.tx_sent = 0  # bytes of tx_fifo gone out
        self.tx_start = self.tx_data = None  # STX, first byte into the FIFO
        self.rx_fifo = []
        self.rx_frame = None  # the Incoming being received
        self.rx_given = 0  # its bytes put into rx_fifo
        self.air = []  # Incoming frames, in time order
        self.sent = []  # (frame, preamble_us from STX to the sync word, channel) transmitted
        self.jammed = False  # a carrier the test puts on the channel
        self._hdr = None

    # ---- the test's side ------------------------------------------------------

    def incoming(self, frame, at, rssi=-80, preamble_us=0, crc_ok=True, channel=None):
        self.air.append(Incoming(frame, at, rssi, preamble_us, crc_ok, channel))

    def _on_channel(self, f):
        return f.channel is None or f.channel == self.regs[CHANNR]

    def gdo0_level(self):
        self._update()
        if self.state == TX and self.tx_data is not None:
            return 1
        f = self.rx_frame
        return 1 if f is not None and self.state == RX and self.clock.us < f.end else 0

    def rx_time_us(self):
        self._update()
        on = self.rx_on_us
        if self.rx_since is not None:
            on += self.clock.us - self.rx_since
        return on

    # ---- SPI (the driver's bus object and chip-select) ----------------------

    def select(self, level):
        if level == 0:
            if self.state == SLEEP:
                self.state = IDLE  # CS low wakes the chip
            self._hdr = None
        else:
            self.clock.advance(SPI_US)
            self._update()
            if self._hdr == 0x139:  # SPWD takes effect when CS goes high
                self._set(SLEEP)

    def write(self, buf):
        buf = bytes(buf)
        if self._hdr is None:
            self._hdr = buf[0]
            buf = buf[1:]
            if self._hdr & 0x3F >= 0x30 and self._hdr & 0x3F < 0x3E and not self._hdr & 0x40 and not self._hdr & 0x80:
                self._strobe(self._hdr)
        if not buf:
            return
        addr = self._hdr & 0x3F
        if addr == 0x3F:
            self._update()
            if self.tx_data is None and self.state == TX:
                self.tx_data = self.clock.us
            self.tx_fifo += buf
            assert len(self.tx_fifo) - self.tx_sent <= 64, "TX FIFO overflow"
        elif addr == 0x3E:
            self.patable = buf[0]
        else:
            assert addr != CHANNR or self.state == IDLE, "CHANNR written in state 0x%02x (datasheet: IDLE)" % self.state
            for i, b in enumerate(buf):
                self.regs[addr + i] = b

    def readinto(self, buf, write=0):
        addr = self._hdr & 0x3F
        self._update()
        for i in range(len(buf)):
            if addr == 0x3F:
                buf[i] = self.rx_fifo.pop(0) if self.rx_fifo else 0
            elif self._hdr & 0x40 and 0x30 <= addr <= 0x3D:
                buf[i] = self._status(addr)
            else:
                buf[i] = self.regs[addr + i]

    def _status(self, addr):
        if addr == 0x30:
            return 0
        if addr == 0x31:
            return self.version
        if addr == 0x35:
            return self.state
        if addr == 0x38:
            carrier = self.state == RX and (self.rx_frame is not None or self._channel_busy())
            return (0x40 if carrier else 0) | (0x08 if self.gdo0_level() and self.state == RX else 0)
        if addr == 0x3A:
            return (0x80 if self.state == TXFIFO_UNDERFLOW else 0) | (len(self.tx_fifo) - self.tx_sent)
        if addr == 0x3B:
            return (0x80 if self.state == RXFIFO_OVERFLOW else 0) | min(len(self.rx_fifo), 0x7F)
        return 0

    # ---- the state machine ----------------------------------------------------

    def _set(self, state):
        now = self.clock.us
        if self.rx_since is not None and state != RX:
            self.rx_on_us += now - self.rx_since
            self.rx_since = None
        if state == RX and self.rx_since is None:
            self.rx_since = now
        if state != RX:
            self.rx_frame = None
        self.state = state

    def _strobe(self, cmd):
        self._update()
        if cmd == 0x30:  # SRES
            self.regs = bytearray(0x2F)
            self._set(IDLE)
        elif cmd == 0x34:  # SRX
            if self.state in (IDLE, RX):
                self._set(RX)
        elif cmd == 0x35:  # STX
            cca = (self.regs[0x17] >> 4) & 3
            if self.state == RX and cca and self._channel_busy():
                return  # stays in RX
            if self.state in (IDLE, RX):
                self._set(TX)
                self.tx_start = self.clock.us
                self.tx_data = None
                self.tx_sent = 0
        elif cmd == 0x36:  # SIDLE
            self._set(IDLE)
        elif cmd == 0x3A:  # SFRX
            assert self.state in (IDLE, RXFIFO_OVERFLOW), "SFRX in state 0x%02x (datasheet: IDLE or overflow)" % self.state
            if self.state in (IDLE, RXFIFO_OVERFLOW):
                self.rx_fifo = []
                if self.state == RXFIFO_OVERFLOW:
                    self._set(IDLE)
        elif cmd == 0x3B:  # SFTX
            assert self.state in (IDLE, TXFIFO_UNDERFLOW), "SFTX in state 0x%02x (datasheet: IDLE or underflow)" % self.state
            if self.state in (IDLE, TXFIFO_UNDERFLOW):
                self.tx_fifo = bytearray()
                self.tx_sent = 0
                if self.state == TXFIFO_UNDERFLOW:
                    self._set(IDLE)
        self._hdr = cmd | 0x100  # no data follows a strobe

    def _channel_busy(self):
        now = self.clock.us
        return self.jammed or any(f.at <= now < f.end and self._on_channel(f) for f in self.air)

    def _update(self):
        """Bring the chip to the clock's time: bytes out of the TX FIFO, into the RX FIFO."""
        now = self.clock.us
        if self.state == TX and self.tx_data is not None:
            first = max(self.tx_data, self.tx_start + 4 * BYTE_US) + 4 * BYTE_US  # preamble, sync
            due = max(0, (now - first) // BYTE_US)
            total = self.tx_fifo[0] + 1 if self.tx_fifo else 0
            if due >= total + 2:  # and the CRC
                self.sent.append((bytes(self.tx_fifo[1:total]), first - 4 * BYTE_US - self.tx_start, self.regs[CHANNR]))
                self.tx_fifo = bytearray()
                self.tx_sent = 0
                self.tx_data = None
                self._set(IDLE)  # MCSM1 TXOFF_MODE = IDLE
            elif due > len(self.tx_fifo) and len(self.tx_fifo) < total:
                self._set(TXFIFO_UNDERFLOW)
            else:
                self.tx_sent = min(due, len(self.tx_fifo))
        if self.state != RX:
            return
        f = self.rx_frame
        if f is None:
            for g in self.air:  # the receiver must be on when the sync word comes
                if self.rx_since <= g.sync <= now and g.end > self.rx_since and self._on_channel(g):
                    self.air.remove(g)
                    f = self.rx_frame = g
                    self.rx_given = 0
                    break
        if f is None:
            return
        data = bytes([len(f.frame)]) + f.frame
        due = min(len(data), max(0, (now - f.sync) // BYTE_US))
        while self.rx_given < due:
            self.rx_fifo.append(data[self.rx_given])
            self.rx_given += 1
        if now >= f.end:
            rssi = ((f.rssi + 74) * 2) & 0xFF  # datasheet: dBm = signed byte / 2 - 74
            self.rx_fifo += [rssi, 0x80 if f.crc_ok else 0x00]
            self.rx_frame = None
        if len(self.rx_fifo) > 64:
            self._set(RXFIFO_OVERFLOW)
