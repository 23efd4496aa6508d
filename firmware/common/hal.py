"""The hardware boundary: everything the firmware may touch, and nothing more.

Firmware code never imports ``machine``, sockets or files directly: it is given
one HAL object. A real board implements it over its pins, SPI transceiver and
LittleFS; the simulator implements it over its virtual world and clock; tests
implement it over a RAM flash and a scripted clock. Methods here are the whole
contract; each raises NotImplementedError until a subclass provides it.

Groups:
- clock:    ``ticks_ms``, ``unix_time``, ``set_unix_time``
- radio:    ``radio_send``, ``radio_receive``, ``radio_rssi``, ``radio_listen``, ``radio_sleep``
- pulses:   ``pulse_attach`` (interrupt-driven counting inputs)
- relay:    ``relay_set``
- sensors:  ``battery_mv``, ``magnet_present``, ``cover_open``, ``power_ok``
- flash:    ``flash_path`` (a directory on a LittleFS volume; files written there survive resets)
- watchdog: ``watchdog_feed``
- link:     ``link_write``, ``link_read`` (the concentrator's serial line to its agent; modules have none)
- sleep:    ``idle`` (a board's main loop between steps; the simulator and tests move time themselves)
"""


class HAL:
    # ---- clock ----------------------------------------------------------------
    def ticks_ms(self):
        """Monotonic milliseconds since boot (wraps like time.ticks_ms on a board)."""
        raise NotImplementedError

    def unix_time(self):
        """Seconds since 1970-01-01 UTC from the real-time clock (0 if never set)."""
        raise NotImplementedError

    def set_unix_time(self, seconds):
        """Set the real-time clock."""
        raise NotImplementedError

    # ---- radio ----------------------------------------------------------------
    def radio_send(self, frame, cca=True, preamble_ms=None):
        """Transmit one frame (<= 64 bytes) after a wake preamble of ``preamble_ms`` (None: the frame's
        shortest, mesh.mac.wake_preamble_ms), on the frame's channel (mesh.mac.frame_channel). Returns False if
        ``cca`` and that channel was busy."""
        raise NotImplementedError

    def radio_receive(self):
        """Return the next received frame as bytes, or None. Frames arrive only while listening."""
        raise NotImplementedError

    def radio_rssi(self):
        """RSSI in dBm of the last frame returned by radio_receive."""
        raise NotImplementedError

    def radio_listen(self):
        """Put the transceiver in receive mode."""
        raise NotImplementedError

    def radio_sleep(self):
        """Put the transceiver to sleep (lowest current)."""
        raise NotImplementedError

    # ---- pulse inputs ---------------------------------------------------------
    def pulse_attach(self, channel, handler):
        """Call ``handler(channel, ticks_ms)`` from interrupt context on each falling edge.

        The handler must not allocate: it runs with the heap locked on boards.
        """
        raise NotImplementedError

    # ---- relay ----------------------------------------------------------------
    def relay_set(self, closed):
        """Close (True: load connected) or open (False) the load relay."""
        raise NotImplementedError

    # ---- sensors --------------------------------------------------------------
    def battery_mv(self):
        raise NotImplementedError

    def magnet_present(self):
        raise NotImplementedError

    def cover_open(self):
        raise NotImplementedError

    def power_ok(self):
        """False once the supply-fail comparator fires: checkpoint now, there are milliseconds left."""
        raise NotImplementedError

    # ---- flash ----------------------------------------------------------------
    def flash_path(self):
        """Directory on the module's LittleFS volume where firmware state lives."""
        raise NotImplementedError

    # ---- watchdog -------------------------------------------------------------
    def watchdog_feed(self):
        raise NotImplementedError

    # ---- agent link (concentrator only) --------------------------------------
    def link_write(self, data):
        """Write bytes to the serial line towards the edge agent; return how many were taken."""
        raise NotImplementedError

    def link_read(self):
        """Return bytes received from the edge agent since the last call (b"" if none)."""
        raise NotImplementedError

    # ---- sleep (a board's main loop) -----------------------------------------
    def idle(self, ms, period=0, phases=(), offset=0, channel=0):
        """Sleep up to ``ms``, the receiver sampling at ``phases``, (phase, channel) pairs, of every ``period``
        (always on, on ``channel``, without phases); True as soon as a frame has come in
        (firmware/common/boardhal.py)."""
        raise NotImplementedError


class FrameInbox:
    """``radio_receive`` and ``radio_rssi`` over a list the radio side fills: ``self.rx``, of
    (frame, rssi) pairs, oldest first. The board's and the simulator's HALs share it."""

    def radio_receive(self):
        if not self.rx:
            return None
        frame, self._rssi = self.rx.pop(0)
        return frame

    def radio_rssi(self):
        return self._rssi
