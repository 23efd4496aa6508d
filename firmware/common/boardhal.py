"""firmware/common/hal.py on a real board: MicroPython's ``machine`` peripherals and a CC1101 on SPI.

    BoardHAL.open(pins)   builds it from ``machine`` (on the board; PINS is the reference layout)
    BoardHAL(parts...)    takes the parts ready-made (tests give it emulated ones)

The mesh MAC (firmware/common/mesh/mac.py) expects a sleeping router to be reachable at its
samples: ``idle`` keeps the MCU and the transceiver asleep between them, wakes the receiver
at each for SETTLE_US, and stays on only when a carrier is there (a sender's wake preamble).
An acknowledgement goes ACK_DELAY_MS after the frame it answers; after sending a frame that
asks for one, the receiver sleeps until ACK_GUARD_MS before that and listens only while the
ACK comes (mesh/mac.py). After acknowledging a frame that said another follows (L_MORE) it
stays on for ACK_TIMEOUT_MS, for the burst's next frame. Modules on one cell depend
on this: the receiver on all the time draws 15.7 mA, a cell's 3400 mAh in nine days.

Like firmware/common/benchhal.py it does not inherit the HAL class (its bytecode would be
RAM), only the small FrameInbox; tests/mpy/test_boardhal.py checks that it implements the
whole contract.
"""

from protocol.compat import const

from firmware.common.cc1101 import CC1101, SETTLE_US
from firmware.common.hal import FrameInbox
from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.mac import ACK_DELAY_MS, ACK_GUARD_MS, ACK_TIMEOUT_MS, frame_channel, wake_preamble_ms
from protocol.frame import L_MORE, O_HOPS, T_ACK, wants_ack

SPI_HZ = const(4000000)  # CC1101 SPI limit is 6.5 MHz for burst access (datasheet table 22), with margin
RELAY_PULSE_MS = const(50)  # latching relay coil pulse (typical set/reset time 10 ms, 50 ms covers a low cell)
WATCHDOG_MS = const(30000)  # an STM32's independent watchdog reaches 32 s at most; idle feeds it at half that
FEED_MS = const(15000)  # the longest sleep between two feeds
BATTERY_DIVIDER = const(2)  # the cell's voltage is halved to fit the ADC's range
ADC_FULL_MV = const(3300)  # read_u16() = 65535 at the ADC's reference
RX_QUEUE = const(4)  # frames held for radio_receive between two polls; more is a burst the MAC does not send
# A carrier at a sample: the sync word follows within the longest wake preamble (mac.WAKE_PREAMBLE_MS and twice
# station.MAX_GUARD_MS) + 3 ms.
SYNC_WAIT_US = const(254000)
Y2000 = const(946684800)  # seconds from 1970 to 2000, the epoch of some ports' RTC

# The reference board's pins; a board's config.json "pins" overrides any of them.
PINS = {"spi": 1, "cs": 5, "gdo0": 4, "pulse": (12, 13, 14), "relay_set": 25, "relay_reset": 26,
        "magnet": 27, "cover": 32, "power_ok": 33, "battery_adc": 34, "uart": None}


class BoardHAL(FrameInbox):
    def __init__(self, radio, clock, rtc, flash="/flash", pulse_pins=(), relay_pins=None,
                 magnet=None, cover=None, power_ok=None, battery_adc=None, watchdog=None, uart=None):
        self.radio = radio
        self.clock = clock
        self.rtc = rtc
        self.flash = flash
        self.pulse_pins = pulse_pins
        self.relay_pins = relay_pins
        self.magnet = magnet
        self.cover = cover
        self.power = power_ok
        self.adc = battery_adc
        self.watchdog = watchdog
        self.uart = uart
        self._epoch = Y2000 if clock.gmtime(0)[0] == 2000 else 0
        self.rx = []  # (frame, rssi) waiting for radio_receive
        self._rssi = 0
        self.listening = False
        self._awake_until = clock.ticks_ms()  # the receiver stays on until then (ACK, burst)
        self._more = 0  # the last frame taken said another follows our acknowledgement (L_MORE)
        self._taken_at = self._awake_until  # when the last frame came in: our ACK to it goes ACK_DELAY_MS later
        self._ack_at = None  # a frame we sent waits for its ACK: the receiver listens from then
        self._sampling = False  # idle was given phases: a router that sleeps between its samples
        radio.reset()

    @classmethod
    def open(cls, pins=None, flash="/flash"):
        """The board's HAL from ``machine``: ``pins`` overrides entries of PINS."""
        import machine
        import time

        p = dict(PINS)
        p.update(pins or {})
        Pin = machine.Pin

        def inp(n):
            return None if n is None else Pin(n, Pin.IN, Pin.PULL_UP)

        def out(n):
            return Pin(n, Pin.OUT, value=0)

        radio = CC1101(machine.SPI(p["spi"], baudrate=SPI_HZ, polarity=0, phase=0),
                       Pin(p["cs"], Pin.OUT, value=1), Pin(p["gdo0"], Pin.IN), time)
        return cls(radio, time, machine.RTC(), flash,
                   pulse_pins=tuple(inp(n) for n in p["pulse"]),
                   relay_pins=(out(p["relay_set"]), out(p["relay_reset"])),
                   magnet=inp(p["magnet"]), cover=inp(p["cover"]), power_ok=inp(p["power_ok"]),
                   battery_adc=machine.ADC(Pin(p["battery_adc"])), watchdog=machine.WDT(timeout=WATCHDOG_MS),
                   uart=None if p["uart"] is None else machine.UART(p["uart"], 115200))

    # ---- clock ----------------------------------------------------------------
    def ticks_ms(self):
        return self.clock.ticks_ms()

    def unix_time(self):
        return self.clock.time() + self._epoch

    def set_unix_time(self, seconds):
        t = self.clock.gmtime(seconds - self._epoch)
        self.rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    # ---- radio ----------------------------------------------------------------
    def radio_send(self, frame, cca=True, preamble_ms=None):
        ack = frame[3] & 0x0F == T_ACK
        if ack:  # at ACK_DELAY_MS after the frame it answers, when that frame's sender listens
            wait = ticks_diff(ticks_add(self._taken_at, ACK_DELAY_MS), self.clock.ticks_ms())
            if wait < -ACK_GUARD_MS:
                return False  # too late: its sender stopped listening, and the ACK's phase would set its clock wrong
            if wait > 0:
                self.clock.sleep_ms(wait)
        if preamble_ms is None:
            preamble_ms = wake_preamble_ms(frame)
        self.radio.tune(frame_channel(frame))  # the ACK, if one comes, comes on it too
        sent = self.radio.send(frame, cca, preamble_ms * 1000)
        if sent and wants_ack(frame):
            # Asleep until its acknowledgement is due: listening from the frame's end drew 15.7 mA for the
            # addressee's ACK_DELAY_MS of parsing and sealing (balans bench radio, rx_ms_per_unicast).
            self._ack_at = ticks_add(self.clock.ticks_ms(), ACK_DELAY_MS - ACK_GUARD_MS)
            self._awake_until = self.clock.ticks_ms()
        elif sent and ack:
            # After our acknowledgement: awake for the burst's next frame only if the frame said one follows
            # (L_MORE); else back to sampling at once (listening ACK_TIMEOUT_MS after every frame acknowledged
            # cost a relay ~27 ms of receiver a frame: balans bench radio, rx_ms_per_received_unicast).
            if self._more:
                self._stay_awake()
            else:
                self._awake_until = self.clock.ticks_ms()
        return sent

    def radio_listen(self):
        self.listening = True
        self.radio.listen()

    def radio_sleep(self):
        self.listening = False
        self.radio.sleep()

    def idle(self, ms, period=0, phases=(), offset=0, channel=0):
        """Wait up to ``ms`` with the MCU asleep; True as soon as a frame has come in.

        Without ``phases`` the receiver stays on ``channel`` (the concentrator; a module searching
        for a parent). With them, (phase, channel) pairs, it sleeps and samples that channel at
        each of those milliseconds of every ``period``, counted as ``(ticks_ms + offset) % period``:
        the MAC's network phase. After a sample or a send the radio stays on its channel for the
        frame, the ACK or the burst that follows.
        """
        clock = self.clock
        end = ticks_add(clock.ticks_ms(), ms)
        self._sampling = bool(phases)
        while True:
            self.watchdog_feed()  # idle may last longer than the watchdog's period; it always returns
            now = clock.ticks_ms()
            left = ticks_diff(end, now)
            if not self.listening:
                if left <= 0:
                    return False
                clock.sleep_ms(min(left, FEED_MS))
                continue
            if self._ack_at is not None:  # on the channel of the frame sent, the concentrator's too
                if self._wait_ack(now, left):
                    return True
                if left <= 0:
                    return False
                continue
            if not phases or ticks_diff(self._awake_until, now) > 0:
                if not phases and ticks_diff(self._awake_until, now) <= 0:
                    self.radio.tune(channel)
                self.radio.listen()
                if self._take_frame():
                    return True
                if left <= 0:
                    return False
                clock.sleep_ms(1)  # a board would sleep until GDO0's interrupt here
                continue
            self.radio.sleep()
            if left <= 0:
                return False
            position = (now + offset) % period
            wait, on = period, 0
            for p, ch in phases:
                w = (p - position) % period
                if w < wait:
                    wait, on = w, ch
            if wait > left or wait > FEED_MS:
                clock.sleep_ms(min(left, FEED_MS))
                continue
            clock.sleep_ms(wait)
            if self._sample(on):
                return True

    def _sample(self, channel):
        """One wake of the receiver on ``channel``: True if a frame came in."""
        radio = self.radio
        clock = self.clock
        radio.tune(channel)
        radio.listen()
        clock.sleep_us(SETTLE_US)
        if not radio.carrier():
            radio.sleep()
            return False
        t0 = clock.ticks_us()
        while not radio.gdo0():  # a wake preamble: wait for its sync word while the carrier lasts
            if clock.ticks_diff(clock.ticks_us(), t0) > SYNC_WAIT_US or not radio.carrier():
                radio.sleep()
                return False
            clock.sleep_us(200)
        return self._take_frame()

    def _wait_ack(self, now, left):
        """The acknowledgement's window (``_ack_at``): asleep before it, then listening until an ACK came
        or, ACK_GUARD_MS after it was due, no carrier is there. True if a frame came in."""
        since = ticks_diff(now, self._ack_at)
        if since < 0:
            self.radio.sleep()
            if left > 0:
                self.clock.sleep_ms(min(-since, left))
            return False
        self.radio.listen()
        if self._take_frame():
            return True
        if since > 2 * ACK_GUARD_MS and not self.radio.carrier():
            self._ack_at = None  # no acknowledgement began in its window: back to sampling
            self.radio.sleep()
        elif left > 0:
            self.clock.sleep_ms(1)
        return False

    def _take_frame(self):
        radio = self.radio
        if not radio.gdo0() or not radio.receive():
            return False
        frame = bytes(radio.frame[:radio.length])
        if len(self.rx) < RX_QUEUE:
            self.rx.append((frame, radio.rssi))
        self._taken_at = self.clock.ticks_ms()
        if frame[3] & 0x0F == T_ACK:
            self._ack_at = None  # the exchange is over: back to sampling
        elif wants_ack(frame):
            self._more = frame[O_HOPS] & L_MORE  # another frame follows our acknowledgement
        else:
            self._stay_awake()  # a burst without acknowledgements (F_FOLLOWS) may follow
            return True
        self._awake_until = self._taken_at
        if self._sampling:
            # Asleep while the station checks the frame and answers, not from the next idle on: the receiver
            # stayed on through that MicroPython work (10-14 ms a frame: balans bench mcu), which the
            # simulator does not charge (balans bench radio, rx_ms_per_received_unicast).
            radio.sleep()
        return True

    def _stay_awake(self):
        self._awake_until = ticks_add(self.clock.ticks_ms(), ACK_TIMEOUT_MS)

    # ---- pulse inputs ---------------------------------------------------------
    def pulse_attach(self, channel, handler):
        pin = self.pulse_pins[channel]
        ticks = self.clock.ticks_ms

        def edge(_pin):  # made once here: the interrupt itself allocates nothing
            handler(channel, ticks())

        pin.irq(trigger=pin.IRQ_FALLING, handler=edge, hard=True)

    # ---- relay ----------------------------------------------------------------
    def relay_set(self, closed):
        """Pulse the latching relay's set or reset coil; it keeps its position without current."""
        coil = self.relay_pins[0 if closed else 1]
        coil(1)
        self.clock.sleep_ms(RELAY_PULSE_MS)
        coil(0)

    # ---- sensors --------------------------------------------------------------
    def battery_mv(self):
        return self.adc.read_u16() * ADC_FULL_MV * BATTERY_DIVIDER // 65535

    def magnet_present(self):
        return self.magnet is not None and self.magnet() == 0  # Hall switch pulls low

    def cover_open(self):
        return self.cover is not None and self.cover() == 1  # the cover holds its switch closed to ground

    def power_ok(self):
        return self.power is None or self.power() == 1  # supply-fail comparator pulls low

    # ---- flash, watchdog, link ------------------------------------------------
    def flash_path(self):
        return self.flash

    def watchdog_feed(self):
        if self.watchdog is not None:
            self.watchdog.feed()

    def link_write(self, data):
        return self.uart.write(data) or 0

    def link_read(self):
        return self.uart.read() or b""
