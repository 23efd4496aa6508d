"""Energy: datasheet currents of a CC1101-class transceiver and an MCU, and an ER18505 cell.

Each node books time in states; the average current and the battery life
follow. Currents: CC1101 datasheet SWRS061 (433 MHz, +10 dBm, 38.4 kBaud);
the WOR figure is the datasheet's average for one RX poll a second.
"""

TX_MA = 29.2  # CC1101 TX at +10 dBm, 433 MHz
RX_MA = 15.7  # CC1101 RX, 38.4 kBaud, near sensitivity
WOR_UA = 9.8  # CC1101 wake-on-radio, one RX poll per second (RC oscillator, RSSI early exit)
SECOND_SAMPLE_UA = WOR_UA / 2  # a dense router's second broadcast sample: one more poll every 2 s superframe
SYNTH_MA = 8.4  # frequency synthesiser calibration before each transmission
SYNTH_S = 0.0008  # its duration (CC1101 FS_CAL ~ 720 us)
MCU_ACTIVE_MA = 8.0  # a Cortex-M4 running MicroPython
MCU_SLEEP_UA = 2.0  # stop mode with RTC and RAM retention
# MicroPython's work on the 80 MHz Cortex-M4 that MCU_ACTIVE_MA stands for, measured (balans bench mcu:
# the real stations on the MicroPython unix port, timed in pystones, and a board's published pystone
# rate; docs/benchmarks.md), with margin. Before session 6, 20 ms, 10 ms and 5 ms were estimates; 14 ms
# and 5 ms until session 7, whose CCM (protocol/ccm.py) takes a byte in one step instead of four.
MCU_FRAME_S = 0.011  # taking one received frame apart: an ACK opened 9.5-9.9 ms, a report to relay less
MCU_SEND_S = 0.003  # preparing one transmission: a report taken and its ACK sealed 13.0-13.4 ms in all
MCU_WAKE_S = 0.005  # one timer wake without a frame: the mesh's 1-1.2 ms, kept at 5 ms for the application's ticks
# Listening for an acknowledgement from ACK_GUARD_MS before it is due (mesh/mac.py ACK_DELAY_MS: the
# board's receiver sleeps through the addressee's work) until its preamble or, none, the CC1101's
# carrier-sense RX termination; an ACK that comes is charged as a received frame (receive()). Before,
# 9 ms were charged here and the ACK's 8 ms airtime again on reception.
ACK_WAIT_S = 0.003
CELL_MAH = 4000.0  # ER18505, 3.6 V Li-SOCl2 bobbin cell
USABLE = 0.85  # capacity left above the cut-off at the end of life
SELF_DISCHARGE_MAH_YEAR = 40.0  # 1 % of nominal a year
HOURS_PER_YEAR = 8766.0


class Meter:
    """Charge a node has drawn, by state (mA*s), since boot and since ``settle``."""

    def __init__(self, always_on=False):
        self.always_on = always_on  # the mains-powered concentrator listens all the time
        self.tx_mas = self.rx_mas = self.mcu_mas = self.search_mas = 0.0
        self.tx_s = 0.0
        self.settled_at = 0.0  # world time the steady-state window starts
        self._settled_mas = 0.0  # charge drawn before it
        self.by = {}  # what the charge went to (breakdown_ua) -> mA*s since boot
        self._settled_by = {}
        self._second_since = None  # world time since which it samples a second broadcast slot (booked up to it)

    def _book(self, what, mas):
        self.by[what] = self.by.get(what, 0.0) + mas

    def drawn_mas(self):
        return self.tx_mas + self.rx_mas + self.mcu_mas + self.search_mas

    def second_sample(self, now, on):
        """From ``now`` it samples a second broadcast slot (mac.broadcast_depths), or no longer."""
        self._book_second(now)
        self._second_since = now if on else None

    def _book_second(self, now):
        """Charge the second broadcast sample up to ``now``."""
        if self._second_since is not None:
            mas = (now - self._second_since) * SECOND_SAMPLE_UA / 1000.0
            self.rx_mas += mas
            self._book("idle: second broadcast sample", mas)
            self._second_since = now

    def settle(self, now):
        """Start the steady-state window: what was drawn so far (the cold start) is booked apart."""
        self._book_second(now)
        self.settled_at = now
        self._settled_mas = self.drawn_mas()
        self._settled_by = dict(self.by)

    def transmit(self, airtime_s, wants_ack, what="tx frame", preamble_s=0.0):
        """A transmission of ``airtime_s``, ``preamble_s`` of it the wake preamble; ``what`` names it
        in the breakdown (\"tx ack\", \"tx unicast\", \"tx broadcast\")."""
        self.tx_s += airtime_s
        tx = airtime_s * TX_MA + SYNTH_S * SYNTH_MA
        self.tx_mas += tx
        self._book(what, tx - preamble_s * TX_MA)
        if preamble_s:
            self._book("tx wake preamble", preamble_s * TX_MA)
        self.mcu_mas += MCU_SEND_S * MCU_ACTIVE_MA
        self._book("mcu preparing a transmission", MCU_SEND_S * MCU_ACTIVE_MA)
        if wants_ack:
            self.rx_mas += ACK_WAIT_S * RX_MA
            self._book("rx waiting for an ack", ACK_WAIT_S * RX_MA)

    def receive(self, airtime_s, what="rx frame", preamble_s=0.0):
        self.rx_mas += airtime_s * RX_MA
        self._book(what, (airtime_s - preamble_s) * RX_MA)
        if preamble_s:
            self._book("rx wake preamble", preamble_s * RX_MA)
        self.mcu_mas += MCU_FRAME_S * MCU_ACTIVE_MA
        self._book("mcu handling a frame", MCU_FRAME_S * MCU_ACTIVE_MA)

    def search(self, seconds):
        """Receiver on continuously while looking for a parent."""
        self.search_mas += seconds * RX_MA
        self._book("rx searching for a parent", seconds * RX_MA)

    def wake(self):
        self.mcu_mas += MCU_WAKE_S * MCU_ACTIVE_MA
        self._book("mcu timer wake", MCU_WAKE_S * MCU_ACTIVE_MA)

    def breakdown_ua(self, now):
        """The steady-state average current (average_ua) by what it went to, in uA: where a battery goes."""
        seconds = now - self.settled_at
        if seconds <= 0:
            return {}
        self._book_second(now)
        out = {"idle: wake-on-radio and MCU asleep": RX_MA * 1000.0 if self.always_on else WOR_UA + MCU_SLEEP_UA}
        for what, mas in self.by.items():
            ua = (mas - self._settled_by.get(what, 0.0)) * 1000.0 / seconds
            if ua > 0:
                out[what] = ua
        return out

    def average_ua(self, now):
        """Average current in the steady-state window up to world time ``now``, idle listening and sleep included."""
        seconds = now - self.settled_at
        if seconds <= 0:
            return 0.0
        self._book_second(now)
        base_ua = RX_MA * 1000.0 if self.always_on else WOR_UA + MCU_SLEEP_UA
        return base_ua + (self.drawn_mas() - self._settled_mas) * 1000.0 / seconds

    def settling_mah(self):
        """Charge drawn before the steady-state window (the cold start's search and joins), in mAh."""
        return self._settled_mas / 3600.0


def battery_years(average_ua):
    """Years an ER18505 lasts at ``average_ua``, self-discharge included."""
    per_year = average_ua / 1000.0 * HOURS_PER_YEAR + SELF_DISCHARGE_MAH_YEAR
    return CELL_MAH * USABLE / per_year
