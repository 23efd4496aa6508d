"""firmware/common/hal.py over the simulated world: a drifting clock, the shared channel,
pulse inputs fed by consumption profiles, a flash directory per node and an energy meter."""

import os

import numpy as np

from firmware.common.hal import HAL, FrameInbox
from firmware.common.mesh.clock import TICKS_PERIOD


class SimHAL(FrameInbox, HAL):
    def __init__(self, world, node):
        self.world = world
        self.node = node
        self.rx = []  # received frames waiting for radio_receive: (bytes, rssi)
        self.listening = False
        self._rssi = 0
        self.relay_closed = True
        self.link_in = b""
        self._rtc_offset = 0.0
        self._tick_offset_ms = world.rng.uniform(0, 1e6)  # boards boot at different times
        self.rate = 1.0 + node.ppm * 1e-6  # local seconds per true second

    # ---- clock: the node's crystal runs node.ppm fast or slow --------------
    # (the most called code of a run: the arithmetic is written out, not shared)
    def local_seconds(self, t=None):
        return (self.world.now if t is None else t) * self.rate

    def ticks_ms(self):
        # While its radio still sends (a frame, an acknowledgement due ACK_DELAY_MS after the frame it answers)
        # the node's time is the end of that: on a board radio_send returns only then, so what the station
        # does next (a beacon's phase, a frame aimed at a sample) happens after it.
        t = self.world.now
        if self.node.busy_until > t:
            t = self.node.busy_until
        return int(t * self.rate * 1000.0 + self._tick_offset_ms) % TICKS_PERIOD

    def clock_ms(self, t):
        """The node's clock at true time ``t`` (world seconds) in ms, unwrapped and not rounded: where its
        receiver stands in its own cycle when a frame starts (World._wakes)."""
        return t * self.rate * 1000.0 + self._tick_offset_ms

    def ticks_at(self, times):
        """Tick counts at true times ``times`` (a numpy array of world seconds), as ints."""
        ticks = (times * self.rate * 1000.0 + self._tick_offset_ms).astype(np.int64) % TICKS_PERIOD
        return ticks.tolist()

    def unix_seconds(self):
        return self.world.epoch + self.local_seconds() + self._rtc_offset

    def unix_time(self):
        return int(self.unix_seconds())

    def set_unix_time(self, seconds):
        self._rtc_offset = seconds - (self.world.epoch + self.local_seconds())
        # The application's next tick was asked on the old clock; the board asks again after every
        # step (d100fc/board.py), and so must the world: a time sync that set the clock 6 s forward
        # closed the hour 6 s late, and that hour's register took the pulses of the next
        # (balans demo --modules 7 --seed 7: the street's input 5 pulses above its members).
        self.node.app_due = None

    # ---- radio --------------------------------------------------------------
    def radio_send(self, frame, cca=True, preamble_ms=None):
        return self.world.transmit(self.node, bytes(frame), cca, preamble_ms)

    def radio_listen(self):
        self.listening = True

    def radio_sleep(self):
        self.listening = False

    # ---- pulses, relay, sensors ----------------------------------------------
    def pulse_attach(self, channel, handler):
        self.node.pulse_handlers[channel] = handler

    def relay_set(self, closed):
        self.relay_closed = bool(closed)

    def battery_mv(self):
        return 3600

    def magnet_present(self):
        return False

    def cover_open(self):
        return False

    def power_ok(self):
        return True

    # ---- flash, watchdog, link ------------------------------------------------
    def flash_path(self):
        path = os.path.join(self.world.flash_dir, "node-%04x" % self.node.addr)
        os.makedirs(path, exist_ok=True)
        return path

    def watchdog_feed(self):
        pass

    def link_write(self, data):
        self.world.link_output(self.node, bytes(data))
        return len(data)

    def link_read(self):
        data, self.link_in = self.link_in, b""
        return data
