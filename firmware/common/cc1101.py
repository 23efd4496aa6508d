"""The CC1101 sub-GHz transceiver over SPI: what the board HAL's radio methods run on.

Settings are the ones the mesh MAC and the simulator assume (firmware/common/mesh/mac.py,
simulator/energy.py): the channel plan from 433.12 MHz in 200 kHz steps (``tune``), 2-FSK at 38.4 kBaud, 4 preamble bytes, a 32-bit sync
word, variable length with CRC, +10 dBm. Register names and values follow the datasheet
(TI SWRS061) and SmartRF Studio's "38.4 kBaud, 20 kHz deviation, 100 kHz filter" preset.

A frame is up to 64 bytes (protocol/frame.py FRAME_MAX), so with its length byte it is one
more than the 64-byte FIFO holds: ``send`` tops the TX FIFO up as it drains, and
``receive`` empties the RX FIFO while the frame arrives, never reading its last byte
before the end (errata SWRZ020, "SPI read synchronisation").

``clock`` gives ``ticks_us``, ``ticks_diff`` and ``sleep_us`` (the ``time`` module on a
board); tests pass an emulator's clock.
"""

from protocol.compat import const

# Command strobes
SRES = const(0x30)
SCAL = const(0x33)
SRX = const(0x34)
STX = const(0x35)
SIDLE = const(0x36)
SPWD = const(0x39)
SFRX = const(0x3A)
SFTX = const(0x3B)

# Status registers (read with the burst bit) and the FIFO
PARTNUM = const(0x30)
VERSION = const(0x31)
MARCSTATE = const(0x35)
PKTSTATUS = const(0x38)
TXBYTES = const(0x3A)
RXBYTES = const(0x3B)
PATABLE = const(0x3E)
CHANNR = const(0x0A)
FIFO = const(0x3F)

READ = const(0x80)
BURST = const(0x40)

# MARCSTATE values the driver waits for or recovers from
M_IDLE = const(0x01)
M_RX = const(0x0D)
M_TX = const(0x13)
M_RXFIFO_OVERFLOW = const(0x11)
M_TXFIFO_UNDERFLOW = const(0x16)

PKT_CS = const(0x40)  # PKTSTATUS: carrier sense, RSSI above the threshold
PKT_SFD = const(0x08)  # PKTSTATUS: sync word found, a frame is arriving
CRC_OK = const(0x80)  # second appended status byte

FIFO_SIZE = const(64)
FRAME_MAX = const(64)  # protocol/frame.py FRAME_MAX
VERSION_CC1101 = const(0x14)  # what the datasheet's part reports in VERSION (0x04 on early silicon)
PREAMBLE_BYTES = const(4)  # MDMCFG1 below
BYTE_US = const(209)  # one byte at 38.4 kBaud: 8 / 38383 s
RSSI_OFFSET = const(74)  # datasheet table 31: 74 dB at 433 MHz, 38.4 kBaud
TX_TIMEOUT_US = const(60000)  # the longest frame (11 ms wake preamble + 75 bytes = 27 ms), twice
RX_TIMEOUT_US = const(30000)  # sync found to the end of a 64-byte frame is 14 ms; twice
SETTLE_US = const(800)  # IDLE->RX with calibration (~720 us) plus RSSI valid; a sample's minimum

# (address, value): register settings applied after reset
SETTINGS = (
    (0x00, 0x2E),  # IOCFG2: GDO2 tri-state, unused
    (0x02, 0x06),  # IOCFG0: GDO0 high from sync word to the end of the frame
    (0x03, 0x47),  # FIFOTHR: default thresholds, ADC retention for wake from SLEEP
    (0x04, 0xD3), (0x05, 0x91),  # SYNC1/0: the datasheet's default word, sent twice (30/32 mode)
    (0x06, FRAME_MAX),  # PKTLEN: longer frames are dropped by the radio itself
    (0x07, 0x04),  # PKTCTRL1: append RSSI and LQI/CRC_OK, no address check
    (0x08, 0x05),  # PKTCTRL0: whitening off, variable length, CRC on
    (0x0B, 0x06),  # FSCTRL1: IF 152 kHz
    # FREQ2/1/0: channel 0 at 433.12 MHz with a 26 MHz crystal; CHANNR picks the channel (tune), MDMCFG1/0 set the
    # spacing: mesh/mac.py's channel plan
    (0x0D, 0x10), (0x0E, 0xA8), (0x0F, 0x91),
    (0x10, 0xCA), (0x11, 0x83),  # MDMCFG4/3: 101 kHz filter, 38.38 kBaud
    (0x12, 0x03),  # MDMCFG2: 2-FSK, 30/32 sync bits (the 4 sync bytes of mac.PHY_OVERHEAD)
    (0x13, 0x22), (0x14, 0xF8),  # MDMCFG1/0: 4 preamble bytes; channel spacing 199.95 kHz (CHANSPC_E 2, _M 248)
    (0x15, 0x35),  # DEVIATN: 20.6 kHz
    (0x17, 0x3C),  # MCSM1: CCA unless below threshold and not receiving; stay in RX after RX, IDLE after TX
    (0x18, 0x18),  # MCSM0: calibrate on IDLE -> RX/TX
    (0x19, 0x16), (0x1B, 0x43),  # FOCCFG, AGCCTRL2 (preset)
    (0x1C, 0x49),  # AGCCTRL1: carrier sense at 7 dB below MAGN_TARGET, about -107 dBm (the simulator's CCA_DBM)
    (0x21, 0x56), (0x22, 0x10),  # FREND1, FREND0: PATABLE[0] is the power
    (0x23, 0xE9), (0x24, 0x2A), (0x25, 0x00), (0x26, 0x1F),  # FSCAL3..0 (preset)
    (0x2C, 0x81), (0x2D, 0x35), (0x2E, 0x09),  # TEST2..0 (preset)
)
PA_10DBM = const(0xC0)  # PATABLE at 433 MHz for +10 dBm (datasheet table 39)


class RadioError(Exception):
    """The transceiver does not answer as a CC1101 or is stuck in a state."""


class CC1101:
    def __init__(self, spi, cs, gdo0, clock):
        self.spi = spi
        self.cs = cs
        self.gdo0 = gdo0
        self.clock = clock
        self._hdr = bytearray(1)
        self._one = bytearray(2)
        self.channel = 0  # CHANNR after reset
        self._pkt = bytearray(FRAME_MAX + 3)  # length byte, frame, RSSI, LQI|CRC_OK
        self.frame = bytearray(FRAME_MAX)  # the last received frame is frame[:length]
        self.length = 0
        self.rssi = 0  # dBm of the last received frame
        self.lost = 0  # frames dropped: bad CRC, overflow, cut short

    # ---- SPI --------------------------------------------------------------------

    def _xfer(self, header, data=None, out=None):
        cs = self.cs
        cs(0)
        try:
            self._hdr[0] = header
            self.spi.write(self._hdr)
            if data is not None:
                self.spi.write(data)
            elif out is not None:
                self.spi.readinto(out, 0)
        finally:
            cs(1)

    def strobe(self, command):
        self._xfer(command)

    def write_reg(self, addr, value):
        self._one[0] = value
        self._xfer(addr, memoryview(self._one)[:1])

    def read_status(self, addr):
        """A status register (0x30-0x3D); read twice until equal (errata: may change mid-read)."""
        buf = memoryview(self._one)[:1]
        while True:
            self._xfer(addr | READ | BURST, out=buf)
            first = buf[0]
            self._xfer(addr | READ | BURST, out=buf)
            if buf[0] == first:
                return first

    def marcstate(self):
        return self.read_status(MARCSTATE) & 0x1F

    # ---- set-up -----------------------------------------------------------------

    def reset(self):
        """Reset, check the part and apply SETTINGS; the radio is left asleep."""
        self.strobe(SRES)
        self.channel = 0
        self.clock.sleep_us(100)
        version = self.read_status(VERSION)
        if self.read_status(PARTNUM) != 0 or version not in (0x04, VERSION_CC1101):
            raise RadioError("no CC1101 on the SPI bus (version 0x%02x)" % version)
        for addr, value in SETTINGS:
            self.write_reg(addr, value)
        self.write_reg(PATABLE, PA_10DBM)
        self.strobe(SCAL)
        self.idle()
        self.sleep()

    # ---- states -----------------------------------------------------------------

    def idle(self):
        self.strobe(SIDLE)
        self._wait_state(M_IDLE, 1000)

    def listen(self):
        """Receiver on (from any state); frames are then taken by ``receive``."""
        state = self.marcstate()
        if state == M_RX:
            return
        if state == M_RXFIFO_OVERFLOW:
            self.strobe(SFRX)
        self.idle()
        self.strobe(SRX)

    def sleep(self):
        """Power down (0.2 uA); registers are kept, the FIFOs lost. CS low wakes it."""
        self.idle()
        self.strobe(SPWD)

    def tune(self, channel):
        """Move to ``channel`` (mesh/mac.py's plan) for the next listen or send. The synthesizer recalibrates on
        the way out of IDLE (MCSM0), within the SETTLE_US every sample and carrier sense already waits."""
        if channel != self.channel:
            self.idle()
            self.write_reg(CHANNR, channel)
            self.channel = channel

    def carrier(self):
        """True while a frame or a carrier is on the channel (the sample of a sleeping router)."""
        return bool(self.read_status(PKTSTATUS) & (PKT_CS | PKT_SFD))

    def _wait_state(self, state, timeout_us):
        clock = self.clock
        t0 = clock.ticks_us()
        while self.marcstate() != state:
            if clock.ticks_diff(clock.ticks_us(), t0) > timeout_us:
                raise RadioError("CC1101 stuck in state 0x%02x" % self.marcstate())

    # ---- sending ----------------------------------------------------------------

    def send(self, frame, cca=True, preamble_us=0):
        """Transmit ``frame``; False if ``cca`` and the channel was busy (the radio stays in RX).

        ``preamble_us`` of extra preamble goes first: the radio sends preamble while its TX
        FIFO is empty, which is how a sender wakes a sampling receiver.
        """
        n = len(frame)
        if n > FRAME_MAX:
            raise ValueError("frame of %d bytes > %d" % (n, FRAME_MAX))
        clock = self.clock
        self.idle()
        self.strobe(SFTX)  # the datasheet allows it only in IDLE (or TX underflow)
        if cca:
            self.strobe(SRX)
            clock.sleep_us(SETTLE_US)  # RSSI is valid only after the receiver settled
        self.strobe(STX)
        if cca and self.marcstate() == M_RX:
            return False  # CCA: the radio refused to transmit and stayed in RX
        if preamble_us:  # on top of the 4 bytes MDMCFG1 sets, as mac.airtime_us counts it
            clock.sleep_us(preamble_us + PREAMBLE_BYTES * BYTE_US)
        self._one[0] = n
        self._xfer(FIFO | BURST, memoryview(self._one)[:1])
        first = min(n, FIFO_SIZE - 1)
        self._xfer(FIFO | BURST, memoryview(frame)[:first])
        done = first
        t0 = clock.ticks_us()
        while done < n:  # top up as bytes go out
            room = FIFO_SIZE - (self.read_status(TXBYTES) & 0x7F)
            if room > 0:
                k = min(room, n - done)
                self._xfer(FIFO | BURST, memoryview(frame)[done:done + k])
                done += k
            elif clock.ticks_diff(clock.ticks_us(), t0) > TX_TIMEOUT_US:
                break
        while self.marcstate() != M_IDLE:  # MCSM1: IDLE once the frame is out
            if clock.ticks_diff(clock.ticks_us(), t0) > TX_TIMEOUT_US:
                self.idle()
                self.strobe(SFTX)
                raise RadioError("CC1101 transmit did not finish")
            if self.marcstate() == M_TXFIFO_UNDERFLOW:
                self.idle()
                self.strobe(SFTX)
                raise RadioError("CC1101 TX FIFO ran dry (the SPI was too slow)")
        return True

    # ---- receiving --------------------------------------------------------------

    def receive(self):
        """Take the frame arriving now (GDO0 high); its length, or 0 if none came or it was bad.

        Call while the receiver is on; it is on again when this returns. The frame is
        ``frame[:length]``, its signal strength ``rssi`` in dBm.
        """
        clock = self.clock
        pkt = self._pkt
        t0 = clock.ticks_us()
        got = 0
        want = len(pkt)  # length byte + frame + RSSI + LQI; known once the length byte is in
        while got < want:
            avail = self.read_status(RXBYTES)
            if avail & 0x80:
                break  # RX FIFO overflow: the frame is lost
            arriving = self.gdo0()
            k = min(avail - 1 if arriving else avail, want - got)  # errata: not the last byte too early
            if k > 0:
                self._xfer(FIFO | READ | BURST, out=memoryview(pkt)[got:got + k])
                if got == 0:
                    if not 0 < pkt[0] <= FRAME_MAX:
                        break
                    want = pkt[0] + 3
                got += k
            elif not arriving:
                break  # nothing (more) on the way
            if clock.ticks_diff(clock.ticks_us(), t0) > RX_TIMEOUT_US:
                break
        if got != want or not pkt[want - 1] & CRC_OK:
            if got:
                self.lost += 1
            self.idle()
            self.strobe(SFRX)
            self.strobe(SRX)
            return 0
        n = want - 3
        self.frame[:n] = memoryview(pkt)[1:1 + n]
        raw = pkt[want - 2]
        self.rssi = (raw - 256 if raw >= 128 else raw) // 2 - RSSI_OFFSET
        self.length = n
        if self.marcstate() != M_RX:
            self.listen()
        return n
