"""The D100FC radio module's metering core: what runs between the pulse inputs and the mesh.

``Module(hal, config, uplink)``; ``boot()`` once, then ``tick()`` by
``next_wakeup()``; decrypted commands go to ``on_downlink()``. The mesh layer
delivers what ``uplink.send`` queues. docs/firmware.md describes the config
dict, the registers, the calendar, the checkpoint and the events.

Every tick first drains the pulse counters and books them under the tariff
and hour that were in force since the previous tick; only then may the
tariff, the hour or the clock change. next_wakeup() puts a tick on every
tariff switch and hour boundary, so pulses land where they belong.
"""

import struct

from firmware.common.records import RecordStore
from firmware.d100fc import calendar, settings
from firmware.d100fc.archive import Archive
from firmware.d100fc.broadcasts import ACT_CLOCK, ACT_GROUP, ACT_REFUSED, CLOCK_VALID_AFTER, BroadcastGate
from firmware.d100fc.errors import E_FORMAT, ConfigError
from firmware.d100fc.eventlog import EventLog
from firmware.d100fc.loadcontrol import CAUSE_GROUP, CAUSE_LIMIT, CAUSE_REMOTE, WINDOW_S, LoadControl
from firmware.d100fc.pulses import CHANNELS, WRAP, PulseInputs
from firmware.d100fc.registers import CHANNEL_STATE, PENALTY, UNKNOWN, Registers
from protocol import messages as m
from protocol.compat import const
from protocol.errors import ProtocolError

HOUR = const(3600)
CHECKPOINT_S = const(900)  # issue floor: a checkpoint at least every 15 minutes
MAX_SLEEP_S = const(60)  # tick at least every minute: sensors are polled, limits measured
CLOCK_EVENT_S = const(10)  # smaller corrections are routine time-sync trimming, not an event
BATTERY_LOW_MV = const(3300)  # ER18505 lithium cell: 3.6 V nominal, ~3.3 V near end of life
BATTERY_HYST_MV = const(100)
LEAK_HOURS = const(24)  # water flowing in every hour of a day
# Answers to the last few commands, kept so that a command re-sent because its
# acknowledgement was lost is answered again, not run again (a re-sent TIME_SYNC
# would set the clock back by the retry delay; a BACKFILL_REQ would send it all twice).
ANSWERS_KEPT = const(4)
OBIS_PENALTY = const(9)  # protocol.obis.PENALTY, the penalty register's tariff digit
MODULE = const(0xFF)  # EVENT.channel of events that are not about a channel
STATE_VERSION = const(1)
STATE = "<BIBBHHIII3B"  # version, hour, tariff, bits, flags, restarts, shed_until, reconnect_at, uptime_s, leak x3
BIT_REMOTE_OPEN = const(1)
BIT_LIMIT_SHED = const(2)
BIT_BATTERY_LOW = const(4)
BIT_MAGNET = const(8)
BIT_COVER = const(16)

# HOURLY flag each event code sets (index = EV_ code)
_EVENT_FLAG = (0, m.FLAG_MAGNET, m.FLAG_MAGNET, m.FLAG_COVER, m.FLAG_COVER, m.FLAG_BATTERY_LOW, m.FLAG_RESTART,
               m.FLAG_CLOCK_SET, m.FLAG_LIMIT, 0, 0, m.FLAG_LEAK, 0, 0, m.FLAG_CLOCK_SET)
# events worth waking the mesh for: tampering and leaks
_URGENT = (m.EV_MAGNET_START, m.EV_COVER_OPEN, m.EV_LEAK)


class Module:
    def __init__(self, hal, config, uplink):
        self.hal = hal
        self.uplink = uplink
        self.config = config
        self.addr = config["addr"]
        self.channels, self._initial = settings.channels_from_config(config["channels"])
        self.max_sleep_s = config.get("max_sleep_s", MAX_SLEEP_S)
        self.checkpoint_s = config.get("checkpoint_s", CHECKPOINT_S)
        self.battery_low_mv = config.get("battery_low_mv", BATTERY_LOW_MV)
        cal = config.get("calendar")
        self.calendar = calendar.Calendar(cal or calendar.FLAT)
        self.passive = None
        relay = config.get("relay", {})
        self.load = LoadControl(relay.get("hysteresis_pct", 10), relay.get("reconnect_delay_s", 300),
                                relay.get("policy", "auto") == "auto")
        self.load.groups = list(config.get("groups", ()))
        self.pulses = PulseInputs([c[2] for c in self.channels])
        self.registers = Registers([c[3] for c in self.channels])
        self._blobs = None  # a BlobAssembler only while a configuration blob is arriving: RAM is scarce
        self.hour = 0
        self.tariff = 1
        self.flags = 0
        self.restarts = 0
        self.uptime_ms = 0
        self.relay_closed = True
        self._open_reasons = 0
        self.leak_hours = [0] * CHANNELS
        self.battery_low = self.magnet = self.cover = False
        self.power_failed = False
        self.checkpoints = 0
        self._window = [0] * CHANNELS  # pulses since the last limit check
        self._ticks = 0
        self._checkpoint_ms = 0  # uptime of the last checkpoint
        self._limit_ms = 0  # uptime of the last limit check
        self.flash_errors = 0  # flash writes that failed: metering goes on from RAM
        self._answers = []  # [(command payload, its ACK)], newest last, at most ANSWERS_KEPT

    # ---- start-up -------------------------------------------------------------
    def boot(self):
        path = self.hal.flash_path()
        self.archive = Archive(path)
        self.events = EventLog(path)
        self._state = RecordStore(path, "state")
        self._settings = RecordStore(path, "settings")
        self._active_store = RecordStore(path, "cal_active")
        self._passive_store = RecordStore(path, "cal_passive")
        self.broadcasts = BroadcastGate(self.hal, path)
        self._load_settings()
        self._load_calendars()
        now = self.hal.unix_time()
        state = self._state.load()
        if state is None or not self._restore(state):
            self.hour = now // HOUR
            for ch in range(len(self.channels)):
                self.registers.value[ch][0] = self._initial[ch]
        self.restarts += 1
        self.tariff = self.calendar.tariff_at(now)
        self._ticks = self.hal.ticks_ms()
        self.pulses.arm(self._ticks)
        for ch in range(len(self.channels)):
            self.hal.pulse_attach(ch, self.pulses.on_edge)
        self._open_reasons = self.load.open_reasons(now)
        self.relay_closed = not self._open_reasons
        self.hal.relay_set(self.relay_closed)
        self._event(m.EV_POWER_RESTART, MODULE, self.restarts)
        self._sense()
        self.checkpoint()
        self.uplink.send(self.diag())

    def records_readable(self):
        """The checkpoint on flash is one this firmware reads (or there is none yet).

        A trial image after an update checks this before boot(), which would
        otherwise start from the configured readings and checkpoint over them.
        """
        state = RecordStore(self.hal.flash_path(), "state").load()
        return state is None or _fits(state)

    def _restore(self, state):
        size = struct.calcsize(STATE)
        if not _fits(state):
            return False
        (_, self.hour, self.tariff, bits, self.flags, self.restarts, self.load.shed_until, self.load.reconnect_at,
         uptime_s, l0, l1, l2) = struct.unpack_from(STATE, state, 0)
        self.uptime_ms = uptime_s * 1000
        self.leak_hours = [l0, l1, l2]
        self.load.remote_open = bool(bits & BIT_REMOTE_OPEN)
        self.load.limit_shed = bool(bits & BIT_LIMIT_SHED)
        self.battery_low = bool(bits & BIT_BATTERY_LOW)
        self.magnet = bool(bits & BIT_MAGNET)
        self.cover = bool(bits & BIT_COVER)
        self.registers.unpack(state, size)
        return True

    def checkpoint(self):
        """Write the registers and state to flash: power-loss safe (see firmware/common/records.py)."""
        bits = ((BIT_REMOTE_OPEN if self.load.remote_open else 0) | (BIT_LIMIT_SHED if self.load.limit_shed else 0)
                | (BIT_BATTERY_LOW if self.battery_low else 0) | (BIT_MAGNET if self.magnet else 0)
                | (BIT_COVER if self.cover else 0))
        head = struct.pack(STATE, STATE_VERSION, self.hour, self.tariff, bits, self.flags, self.restarts & 0xFFFF,
                           self.load.shed_until, self.load.reconnect_at, self.uptime_ms // 1000,
                           *[min(x, 255) for x in self.leak_hours])
        if self._flash(self._state.save, head + self.registers.pack()):
            self.checkpoints += 1
        self._checkpoint_ms = self.uptime_ms  # a failed one is tried again when the next is due, not at every wake

    def _flash(self, write, data):
        """Do one flash write; a failing flash (worn, full) must not stop the counting.

        The registers live in RAM between checkpoints anyway, so the module goes on
        metering and reporting, flags the next HOURLY and tries again next time.
        """
        try:
            write(data)
            return True
        except OSError:
            self.flash_errors += 1
            self.flags |= m.FLAG_FLASH_FAULT
            return False

    def power_fail(self):
        """The supply-fail comparator fired: book what was counted and save it while there is charge left."""
        self._drain()
        self.checkpoint()

    # ---- the periodic work ----------------------------------------------------
    def tick(self):
        now = self.hal.unix_time()
        t = self.hal.ticks_ms()
        self.uptime_ms += (t - self._ticks) & WRAP
        self._ticks = t
        self.hal.watchdog_feed()
        self._drain()
        save = False
        if self.passive is not None and now >= self.passive.activation:
            self._activate(self.passive)
            save = True
        tariff = self.calendar.tariff_at(now)
        if tariff != self.tariff:
            self.tariff = tariff
            save = True
        if now // HOUR > self.hour:
            self._new_hour(now)
            save = True
        self._sense()
        if self.load.any_limit() and self.uptime_ms - self._limit_ms >= 1000 * WINDOW_S:
            self._check_limits(now)
        save = self._apply_relay(now) or save
        if not self.hal.power_ok():
            if not self.power_failed:
                self.power_failed = True
                save = True
        else:
            self.power_failed = False
        if save or self.uptime_ms - self._checkpoint_ms >= 1000 * self.checkpoint_s:
            self.checkpoint()

    def next_wakeup(self):
        now = self.hal.unix_time()
        t = now + self.max_sleep_s
        for at in ((max(self.hour, now // HOUR) + 1) * HOUR, self.calendar.next_change(now),
                   self.passive.activation if self.passive is not None else None, self.load.next_event(now),
                   now + self.checkpoint_s - (self.uptime_ms - self._checkpoint_ms) // 1000):
            if at is not None and at < t:
                t = at
        return max(t, now)

    def _drain(self):
        for ch in range(len(self.channels)):
            n = self.pulses.drain(ch)
            if n:
                self.registers.book(ch, n, self.tariff)
                self._window[ch] += n

    def _new_hour(self, now):
        hour = now // HOUR
        self.registers.close_hour(hour == self.hour + 1)
        self.hour = hour
        for ch in range(len(self.channels)):
            if self.channels[ch][0] == "water":
                self._watch_leak(ch)
        mv = self.hal.battery_mv()
        if mv < self.battery_low_mv and not self.battery_low:
            self.battery_low = True
            self._event(m.EV_BATTERY_LOW, MODULE, mv)
        elif mv >= self.battery_low_mv + BATTERY_HYST_MV:
            self.battery_low = False
        flags = self.flags
        if now < CLOCK_VALID_AFTER:
            flags |= m.FLAG_CLOCK_UNSET
        if not self.relay_closed:
            flags |= m.FLAG_RELAY_OPEN
        battery = min(255, max(0, (mv - 2000) // 20))
        tariff = self.tariff | (((1 << len(self.channels)) - 1) << 4)
        regs = self.registers
        if not self._flash(lambda values: self.archive.append(hour, flags, battery, tariff, values), regs.value):
            flags |= m.FLAG_FLASH_FAULT
        self.flags = 0  # every flag so far goes out in this report
        deltas = []
        for back in range(2):
            for ch in range(CHANNELS):
                d = regs.prev[ch][back]
                deltas.append(m.DELTA_UNKNOWN if d == UNKNOWN or d >= m.DELTA_UNKNOWN else d)
        totals = [regs.total(ch) for ch in range(CHANNELS)]
        self.uplink.send(m.Hourly(hour, flags, battery, tariff, totals, deltas).encode())
        if (hour + self.addr) % 24 == 0:  # daily, spread over the day by address
            for ch in range(len(self.channels)):
                self.uplink.send(m.Registers(hour, ch, regs.value[ch]).encode())
            self.uplink.send(self.diag())

    def _watch_leak(self, ch):
        flowing = self.registers.prev[ch][0]
        self.leak_hours[ch] = self.leak_hours[ch] + 1 if flowing and flowing != UNKNOWN else 0
        if self.leak_hours[ch] >= LEAK_HOURS:
            self.leak_hours[ch] = 0
            self._event(m.EV_LEAK, ch, LEAK_HOURS)

    def _sense(self):
        magnet = bool(self.hal.magnet_present())
        if magnet != self.magnet:
            self.magnet = magnet
            self._event(m.EV_MAGNET_START if magnet else m.EV_MAGNET_END, MODULE, 0)
        cover = bool(self.hal.cover_open())
        if cover != self.cover:
            self.cover = cover
            self._event(m.EV_COVER_OPEN if cover else m.EV_COVER_CLOSED, MODULE, 0)

    def _check_limits(self, now):
        dt_ms = self.uptime_ms - self._limit_ms
        self._limit_ms = self.uptime_ms
        demand = [self._window[ch] * HOUR * 1000 // dt_ms for ch in range(CHANNELS)]
        for ch in range(CHANNELS):
            self._window[ch] = 0
        was_shed = self.load.limit_shed
        over = self.load.check(now, demand, self.tariff)
        if over is not None and not was_shed:
            self._event(m.EV_LIMIT_EXCEEDED, over, demand[over])

    def _apply_relay(self, now, cause=None):
        """Switch the relay if its reasons to be open changed; the event names ``cause`` or the reason that moved."""
        reasons = self.load.open_reasons(now)
        changed = reasons ^ self._open_reasons
        self._open_reasons = reasons
        if bool(reasons) != self.relay_closed:
            return False
        if cause is None:
            cause = CAUSE_LIMIT if changed & (1 << CAUSE_LIMIT) else CAUSE_GROUP
        self.relay_closed = not reasons
        self.hal.relay_set(self.relay_closed)
        self._event(m.EV_RELAY_SWITCHED, MODULE, cause * 2 + (1 if self.relay_closed else 0))
        return True

    def _event(self, code, channel, value):
        now = self.hal.unix_time()
        value = max(-0x80000000, min(0x7FFFFFFF, value))
        self.flags |= _EVENT_FLAG[code]
        self._flash(lambda v: self.events.add(now, code, channel, v), value)
        self.uplink.send(m.Event(now, code, channel, value).encode(), urgent=code in _URGENT)

    # ---- diagnostics ----------------------------------------------------------
    def diag(self):
        """The DIAG payload: uptime, restarts, battery and the mesh layer's radio counters."""
        radio = self.uplink.stats() if hasattr(self.uplink, "stats") else {}
        return m.Diag(self.uptime_ms // 1000, self.restarts & 0xFFFF, min(self.hal.battery_mv(), 0xFFFF),
                      radio.get("tx", 0) & 0xFFFF, radio.get("rx", 0) & 0xFFFF, radio.get("retries", 0) & 0xFFFF,
                      radio.get("parent", 0), radio.get("rssi", 0), radio.get("hops", 0)).encode()

    # ---- commands ----------------------------------------------------------------
    def on_downlink(self, payload):
        """Run one command (sealed under this module's key) and return its ACK; a repeat gets the same ACK again."""
        for seen, answer in self._answers:
            if seen == payload:
                return answer
        answer = self._command(payload)
        if len(self._answers) >= ANSWERS_KEPT:
            self._answers.pop(0)
        self._answers.append((bytes(payload), answer))
        return answer

    def on_broadcast(self, payload):
        """Act on a broadcast (sealed under the network key) as far as broadcasts.BroadcastGate lets it."""
        for act, what in self.broadcasts.take(payload, self.uptime_ms // 1000):
            if act == ACT_GROUP:
                self._group_command(what)
            elif act == ACT_CLOCK:
                self._set_clock(what)
            elif act == ACT_REFUSED:
                self._event(m.EV_BROADCAST_REFUSED, MODULE, what)
            else:
                self._event(m.EV_CLOCK_LIMITED, MODULE, what)

    def _command(self, payload):
        try:
            msg = m.decode(payload)
        except ProtocolError:
            seq = payload[1] | (payload[2] << 8) if len(payload) >= 3 else 0
            return m.Ack(seq, m.ST_BAD_VALUE, 0).encode()
        kind = type(msg)
        if kind is m.GroupCmd:
            self._group_command(msg)
            return m.Ack(msg.seq, m.ST_OK, 0).encode()
        handler = _HANDLERS.get(kind)
        if handler is None:
            return m.Ack(0, m.ST_UNKNOWN_COMMAND, payload[0]).encode()
        status, detail = handler(self, msg)
        return m.Ack(msg.seq, status, detail).encode()

    def _group_command(self, msg):
        now = self.hal.unix_time()
        if self.load.group_command(now, msg.group, msg.action == 1, msg.duration_s):
            self._drain()
            if self._apply_relay(now):
                self.checkpoint()

    def _on_time_sync(self, msg):
        self._set_clock(msg.unix)
        return m.ST_OK, 0

    def _set_clock(self, unix):
        self._drain()
        old = self.hal.unix_time()
        self.hal.set_unix_time(unix)
        if abs(unix - old) >= CLOCK_EVENT_S:
            self._event(m.EV_CLOCK_SET, MODULE, unix - old)
            self.tick()

    def _on_config_chunk(self, msg):
        try:
            if self._blobs is None:
                self._blobs = settings.BlobAssembler()
            done = self._blobs.feed(msg)
            if done is None:
                return m.ST_OK, 0
            self._blobs = None
            kind, blob = done
            if kind == settings.KIND_CALENDAR:
                return m.ST_OK, self._accept_calendar(calendar.Calendar(blob))
            if kind == settings.KIND_CHANNELS:
                self._accept_channels(settings.decode_channels(blob))
                return m.ST_OK, 1
            raise ConfigError(E_FORMAT, "blob kind %d" % kind)
        except ConfigError as e:
            self._blobs = None
            self._event(m.EV_CONFIG_REFUSED, MODULE, e.code)
            return m.ST_REFUSED, e.code

    def _accept_calendar(self, cal):
        """Make ``cal`` active now, or passive until its activation time. Returns 1 (active) or 2 (passive)."""
        if cal.activation > self.hal.unix_time():
            self.passive = cal
            self._passive_store.save(cal.blob)
            return 2
        self._drain()
        self._activate(cal)
        self.tick()
        return 1

    def _activate(self, cal):
        self.calendar = cal
        self.passive = None
        self._active_store.save(cal.blob)
        self._passive_store.save(b"")

    def _accept_channels(self, chans):
        self._drain()
        self._use_channels(chans)
        self._save_settings()
        self.checkpoint()

    def _use_channels(self, chans):
        old = len(self.channels)
        self.channels = chans
        for ch in range(len(chans)):
            self.pulses.set_debounce(ch, chans[ch][2])
            self.registers.contract[ch] = chans[ch][3]
            if ch >= old:
                self.hal.pulse_attach(ch, self.pulses.on_edge)

    def _on_set_limit(self, msg):
        self.load.set_limit(msg.source, msg.channel, msg.tariff, msg.limit)
        self._save_settings()
        return m.ST_OK, 0

    def _on_relay(self, msg):
        self._drain()
        self.load.relay_command(msg.action)
        self._apply_relay(self.hal.unix_time(), CAUSE_REMOTE)
        self.checkpoint()
        return m.ST_OK, 0

    def _on_backfill(self, msg):
        sent = 0
        for payload in self.archive_range(msg.from_hour, msg.count):
            if self.uplink.send(payload, urgent=False, backfill=True) is False:
                break
            sent += 1
        return m.ST_OK, min(sent, 255)

    def _on_set_anchor(self, msg):
        self.broadcasts.set_anchor(msg)
        return m.ST_OK, 0

    def _on_set_groups(self, msg):
        self.load.groups = msg.group_ids()
        self._save_settings()
        return m.ST_OK, 0

    def archive_range(self, from_hour, count):
        for hour in range(from_hour, from_hour + count):
            payload = self.archive.hourly(hour)
            if payload is not None:
                yield payload

    # ---- settings on flash ----------------------------------------------------
    def _save_settings(self):
        load = self.load
        groups = load.groups[:8]
        blob = settings.encode_channels(self.channels)
        out = struct.pack("<B", len(blob)) + blob
        out += struct.pack("<30I", *load.limits)
        out += struct.pack("<BBI", load.hysteresis_pct, 1 if load.auto_reconnect else 0, load.reconnect_delay_s)
        out += struct.pack("<B%dH" % len(groups), len(groups), *groups)
        self._settings.save(out)

    def _load_settings(self):
        data = self._settings.load()
        if not data:
            return
        n = data[0]
        self._use_channels(settings.decode_channels(data[1:1 + n]))
        pos = 1 + n
        self.load.limits = list(struct.unpack_from("<30I", data, pos))
        pos += 120
        self.load.hysteresis_pct, auto, self.load.reconnect_delay_s = struct.unpack_from("<BBI", data, pos)
        self.load.auto_reconnect = bool(auto)
        pos += 6
        self.load.groups = list(struct.unpack_from("<%dH" % data[pos], data, pos + 1))

    def _load_calendars(self):
        for store, active in ((self._active_store, True), (self._passive_store, False)):
            blob = store.load()
            if blob:
                try:
                    cal = calendar.Calendar(blob)
                except ConfigError:
                    continue  # a calendar that passed once cannot fail now unless flash rotted: keep the default
                if active:
                    self.calendar = cal
                else:
                    self.passive = cal

    # ---- reading registers (tests, tools, the simulator) ----------------------
    def register(self, channel, tariff):
        """Pulses of ``channel`` in ``tariff`` as OBIS numbers it: 0 total, 1..4, obis.PENALTY."""
        if tariff == 0:
            return self.registers.total(channel)
        return self.registers.value[channel][PENALTY if tariff == OBIS_PENALTY else tariff - 1]

    def obis_registers(self, channel):
        """{OBIS code: pulses} of every register of ``channel``, the total first."""
        from protocol import obis  # only tools ask for names: spare the RAM on the module

        resource = self.channels[channel][0]
        return dict((obis.code(resource, t), self.register(channel, t)) for t in (0, 1, 2, 3, 4, obis.PENALTY))


def _fits(state):
    return len(state) == struct.calcsize(STATE) + struct.calcsize(CHANNEL_STATE) * CHANNELS and state[0] == STATE_VERSION


_HANDLERS = {
    m.TimeSync: Module._on_time_sync,
    m.ConfigChunk: Module._on_config_chunk,
    m.SetLimit: Module._on_set_limit,
    m.Relay: Module._on_relay,
    m.BackfillReq: Module._on_backfill,
    m.SetGroups: Module._on_set_groups,
    m.SetAnchor: Module._on_set_anchor,
}
