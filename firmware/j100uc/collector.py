"""J100UC collector: the concentrator's radio side between the mesh and the edge agent.

The mesh layer hands it every decrypted application message (``on_uplink``);
it turns HOURLY, REGISTERS and EVENT messages into link records (meter, hour
stamp, register, integer pulses), rebuilds up to two lost hours from HOURLY's
deltas, asks modules to resend older lost hours from their archives, and holds
the records in a bounded ring until the agent has them on disk. Commands from
the agent go down the mesh, one at a time per module, and their results go back. Firmware updates from
the agent go to the mesh root's update hop (``on_ota``; firmware/common/ota/meshota.py),
whose requests go back to the agent (``ota_upstream``); modules' OTA_STATUS reports go
to the agent as L_OTA_STATUS.

When the ring is full a new HOURLY reading is not lost: its hour is marked
missing and asked back from the module's archive once the agent drains the
ring. REGISTERS and EVENT records that find the ring full are counted in
``overflow`` (REGISTERS comes again within a day; events stay in the module's
archive).

Persistent state (in hal.flash_path()): the boot counter, and each module's last
reported hour (saved every config "save_s", default SAVE_S) so that a restart
still notices gaps: hours since the last save are asked back from the modules.
"""

import os
import struct

from firmware.j100uc.agentlink import TICKS_MASK, AgentLink, elapsed
from firmware.j100uc.gaps import Gaps
from firmware.j100uc.ring import RecordRing
from protocol import link, messages
from protocol.compat import const
from protocol.obis import PENALTY, RESOURCES

HOLD_RECORDS = const(4096)  # default ring: 48 KB of RAM, ~5 hours of 720 meters
BACKFILL_RETRY_S = const(600)  # a backfill may take minutes to cross 30 hops: ask again after this
BACKFILL_SETTLE_S = const(30)  # after an archive answer, ask for the next hours this much later
BACKFILL_PER_TICK = const(4)  # requests sent per tick: spread the airtime
BACKFILL_MAX_HOURS = const(24)  # hours asked per request: one day of a module's archive
CMD_QUEUE_MAX = const(32)
CMD_TIMEOUT_MS = const(5 * 60 * 1000)  # a unicast command unanswered this long has failed
CMD_TRIES = const(3)
SAVE_S = const(600)  # how often the last-hour table goes to flash: 6 writes of ~1.5 KB an hour
STATS_MS = const(60 * 1000)
MODULES_PER_TICK = const(8)  # MODULE frames per tick: status is best effort
ST_TIMEOUT = const(0xFF)  # RESULT status when a module never answered
NO_HOUR = const(0xFFFFFFFF)
IDLE_WAKEUP_S = const(5)  # the agent's TIME and CMD frames wait at most this long
BROADCAST = const(0xFFFF)
OTA_BUSY_MS = const(10000)  # an update from the agent came this recently: answer its pieces every second


class Module:
    """What the concentrator knows of one radio module."""

    def __init__(self, addr, resources):
        self.addr = addr
        self.resources = resources  # resource index per channel, -1 = no meter
        self.last_hour = None
        self.last_end = 0  # ring index after the last live hour's records
        self.safe_hour = None  # every hour up to this one is on the agent's disk
        self.gaps = Gaps()
        self.last_heard = 0
        self.battery = 0
        self.rssi = 0
        self.hops = 0
        self.backfill_at = None
        self.dirty = False


class Collector:
    def __init__(self, hal, config, downlink, roster=None):
        """config: dict (net id, site/conc ids, module table...); downlink: object with
        send(dst_addr, payload: bytes) -> bool (mesh unicast) and broadcast(payload, group=None) -> bool.
        roster: the module table on flash (firmware/j100uc/roster.py), which the agent's ROSTER
        frames change; without it, config's "modules" is the table."""
        self.hal = hal
        self.config = config
        self.downlink = downlink
        self.roster = roster
        self.modules = {}
        if roster is not None:
            for addr, res in roster.resources.items():
                self.modules[addr] = Module(addr, res)
        else:
            for addr, channels in config.get("modules", {}).items():
                if isinstance(addr, str):
                    addr = int(addr, 16)
                res = [RESOURCES.index(r) if r else -1 for r in channels]
                self.modules[addr] = Module(addr, res)
        self._rota = list(self.modules.values())  # backfill turns, fixed: no list built per tick
        self.ring = RecordRing(config.get("hold_records", HOLD_RECORDS))
        self.boot = self._next_boot()
        self.link = AgentLink(hal, self.boot, self.ring)
        self._load_hours()
        self.seq = 0
        self.commands = []  # [cmd_id, dst, payload, seq, tries, sent_ms or None]
        self._time_synced = False
        self._save_ms = int(config.get("save_s", SAVE_S) * 1000)
        self._retry_ms = int(config.get("backfill_retry_s", BACKFILL_RETRY_S) * 1000)
        self._settle_ms = int(config.get("backfill_settle_s", BACKFILL_SETTLE_S) * 1000)
        self._last_save = hal.ticks_ms()
        self._last_stats = None
        self._backfill_next = 0
        self.unknown = 0  # messages from modules not in the table
        self.bad_messages = 0
        self.overflow = 0  # REGISTERS/EVENT records lost to a full ring
        self.duplicates = 0  # hours reported again (backfill overlap, retries)
        self.on_ota = None  # the mesh root's update hop (MeshOta.from_upstream): what the agent sends for updates
        self._ota_ms = None  # tick of the last update traffic from the agent: tick every second while it flows

    # ---- persistent state ----------------------------------------------------
    def _path(self, name):
        return self.hal.flash_path() + "/" + name

    def _next_boot(self):
        try:  # the file is written by rename, so it is whole or absent
            with open(self._path("j100uc.boot"), "rb") as f:
                data = f.read(4)
        except OSError:
            data = b""
        boot = struct.unpack("<I", data)[0] + 1 if len(data) == 4 else 1
        self._write_file("j100uc.boot", struct.pack("<I", boot))
        return boot

    def _write_file(self, name, data):
        tmp = self._path(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self._path(name))

    def _load_hours(self):
        try:
            with open(self._path("j100uc.hours"), "rb") as f:
                data = f.read()
        except OSError:
            return
        for off in range(0, len(data) - 5, 6):
            addr, hour = struct.unpack_from("<HI", data, off)
            m = self.modules.get(addr)
            if m is not None and hour != NO_HOUR:
                m.last_hour = m.safe_hour = hour  # hours after it are asked back when the module reports

    def _save_hours(self):
        """Save each module's safe hour: what a restart (losing the ring and the gap list) must not ask again."""
        buf = bytearray(6 * len(self.modules))
        off = 0
        for addr, m in self.modules.items():
            if m.last_hour is not None and m.last_end <= self.ring.base:
                m.safe_hour = m.last_hour
            gap = m.gaps.first()
            if gap is not None and m.safe_hour is not None and gap[0] <= m.safe_hour:
                m.safe_hour = gap[0] - 1
            struct.pack_into("<HI", buf, off, addr, NO_HOUR if m.safe_hour is None else m.safe_hour)
            off += 6
        self._write_file("j100uc.hours", buf)

    # ---- up: messages from the mesh ----------------------------------------------
    def on_uplink(self, src_addr, payload, backfill=False):
        """One decrypted application message from module src_addr."""
        m = self.modules.get(src_addr)
        if m is None:
            self.unknown += 1
            return
        try:
            msg = messages.decode(payload)
        except ValueError:
            self.bad_messages += 1
            return
        if not backfill:
            m.last_heard = self.hal.unix_time()
            m.dirty = True
        t = msg.TYPE
        if t == messages.Hourly.TYPE:
            self._hourly(m, msg, backfill)
        elif t == messages.Registers.TYPE:
            self._registers(m, msg)
        elif t == messages.Event.TYPE:
            if not self.ring.push(link.K_EVENT, m.addr, msg.channel, msg.code, msg.time, msg.value):
                self.overflow += 1
        elif t == messages.Diag.TYPE:
            m.battery = max(0, min(255, (msg.battery_mv - 2000) // 20))
            m.rssi = msg.rssi
            m.hops = msg.hops
        elif t == messages.Ack.TYPE:
            self._command_answered(m.addr, msg)
        elif t == messages.OtaStatus.TYPE:
            self.link.write(link.pack(link.L_OTA_STATUS, m.addr, msg.session, msg.state, msg.missing))

    def _hourly(self, m, msg, backfill):
        h = msg.hour
        m.battery = msg.battery
        channels = [ch for ch in range(messages.CHANNELS) if m.resources[ch] >= 0]
        if not backfill and (m.last_hour is None or h > m.last_hour):
            if m.last_hour is not None and m.last_end <= self.ring.base:
                m.safe_hour = m.last_hour
            if m.last_hour is not None and h > m.last_hour + 1:
                m.gaps.add(m.last_hour + 1, h - m.last_hour - 1)
            m.last_hour = h
            self._emit_hour(m, h, channels, msg.totals)
            m.last_end = self.ring.end
        elif m.gaps.take(h):
            self._emit_hour(m, h, channels, msg.totals)
            if backfill:  # the archive answers: ask for the next missing hours soon, not after a retry
                m.backfill_at = (self.hal.ticks_ms() - self._retry_ms + self._settle_ms) & TICKS_MASK
        else:
            self.duplicates += 1
        # the two hours before, rebuilt from the deltas, if they are missing
        running = list(msg.totals)
        for back in (1, 2):
            for ch in channels:
                d = msg.delta(ch, back)
                if d is None or d > running[ch]:
                    return
                running[ch] -= d
            if m.gaps.take(h - back):
                self._emit_hour(m, h - back, channels, running)

    def _emit_hour(self, m, hour, channels, totals):
        ts = hour * 3600
        if self.ring.free() < len(channels):
            m.gaps.add(hour, 1)  # asked back from the archive once the agent drains the ring
            return
        for ch in channels:
            self.ring.push(link.K_READING, m.addr, ch, m.resources[ch] << 4, ts, totals[ch])

    def _registers(self, m, msg):
        res = m.resources[msg.channel]
        if res < 0:
            return
        ts = msg.hour * 3600
        for i in range(messages.TARIFFS + 1):
            tariff = i + 1 if i < messages.TARIFFS else PENALTY
            if not self.ring.push(link.K_READING, m.addr, msg.channel, (res << 4) | tariff, ts, msg.registers[i]):
                self.overflow += 1

    # ---- down: commands ------------------------------------------------------------
    def _next_seq(self):
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def _queue_command(self, cmd_id, dst, message):
        if len(self.commands) >= CMD_QUEUE_MAX or len(message) < 3:
            self.link.write(link.pack(link.L_RESULT, cmd_id, dst, messages.ST_BUSY, 0))
            return
        if message[0] == messages.BackfillReq.TYPE and dst in self.modules:
            req = messages.decode(message)  # central asked for hours again: take what comes back
            self.modules[dst].gaps.add(req.from_hour, req.count)
        if dst == BROADCAST:  # unanswered, and tagged by the agent: sent as it came
            self.commands.append([cmd_id, dst, bytes(message), 0, 0, None])
            return
        seq = self._next_seq()
        payload = bytearray(message)
        payload[1] = seq & 0xFF
        payload[2] = seq >> 8
        self.commands.append([cmd_id, dst, bytes(payload), seq, 0, None])

    def _command_answered(self, addr, ack):
        for i in range(len(self.commands)):
            c = self.commands[i]
            if c[1] == addr and c[3] == ack.seq:
                self.commands.pop(i)
                self.link.write(link.pack(link.L_RESULT, c[0], addr, ack.status, ack.detail))
                return

    def _pump_commands(self, now):
        busy = set()
        i = 0
        while i < len(self.commands):
            c = self.commands[i]
            cmd_id, dst, payload, seq, tries, sent = c
            if sent is not None and elapsed(now, sent) < CMD_TIMEOUT_MS:
                busy.add(dst)  # one command in flight per module: they apply in order
                i += 1
                continue
            if tries >= CMD_TRIES or dst in busy:
                if tries >= CMD_TRIES:
                    self.commands.pop(i)
                    self.link.write(link.pack(link.L_RESULT, cmd_id, dst, ST_TIMEOUT, 0))
                    continue
                i += 1
                continue
            c[4] = tries + 1
            if dst == BROADCAST:
                group = struct.unpack_from("<H", payload, 3)[0] if payload[0] == messages.GroupCmd.TYPE else None
                if self.downlink.broadcast(payload, group):
                    self.commands.pop(i)
                    self.link.write(link.pack(link.L_RESULT, cmd_id, dst, messages.ST_OK, 0))
                    continue
            elif self.downlink.send(dst, payload):
                c[5] = now
                busy.add(dst)
            i += 1

    def _pump_backfill(self, now):
        if self.ring.free() < self.ring.capacity // 2 or not self.modules:
            return  # the agent is behind: asking for more would only overflow the ring
        now_hour = self.hal.unix_time() // 3600
        rota = self._rota
        sent = 0
        for k in range(len(rota)):
            m = rota[(self._backfill_next + k) % len(rota)]
            if not m.gaps.ranges:
                continue  # nothing missing, nothing to expire: most modules on most ticks
            if self._time_synced:
                m.gaps.expire(now_hour)
            first = m.gaps.first()
            if first is None or (m.backfill_at is not None and elapsed(now, m.backfill_at) < self._retry_ms):
                continue
            # ask only for what the ring can take: answers that do not fit would be asked again
            width = max(1, sum(1 for r in m.resources if r >= 0))
            count = min(first[1], BACKFILL_MAX_HOURS, self.ring.free() // width)
            if count == 0:
                return
            req = messages.BackfillReq(self._next_seq(), first[0], count)
            m.backfill_at = now
            if not self.downlink.send(m.addr, req.encode()):
                m.backfill_at = None  # the mesh was busy: try again next tick
                continue
            sent += 1
            if sent >= BACKFILL_PER_TICK:
                self._backfill_next = (self._backfill_next + k + 1) % len(rota)
                return

    # ---- periodic --------------------------------------------------------------------
    def tick(self):
        """Periodic: gap detection -> BACKFILL_REQ via downlink; pump the agent link; time sync; command queue."""
        now = self.hal.ticks_ms()
        for ftype, fields, tail in self.link.pump(now):
            if ftype == link.L_TIME:
                self._on_time(fields[0], now)
            elif ftype == link.L_CMD:
                self._queue_command(fields[0], fields[1], tail)
            elif ftype == link.L_OTA and self.on_ota is not None:
                self._ota_ms = now
                self.on_ota(tail)
            elif ftype == link.L_ROSTER and self.roster is not None:
                self._on_roster(fields[0], fields[1:], tail)
        self._pump_commands(now)
        self._pump_backfill(now)
        if self.link.agent_seen:
            self._report(now)
        if elapsed(now, self._last_save) >= self._save_ms:
            self._last_save = now
            self._save_hours()

    def _on_roster(self, addr, resources, key):
        """The agent adds, changes or (with a zero key) removes a module; answer with what is held.

        A module address or resource out of range is refused (counted in bad_messages)."""
        roster = self.roster
        if not 0 < addr < BROADCAST or any(r >= len(RESOURCES) and r != link.NO_RESOURCE for r in resources):
            self.bad_messages += 1  # refused: the answer says nothing is held
        elif any(key):
            roster.add(addr, resources, key)
            m = self.modules.get(addr)
            if m is None or m.resources != roster.resources[addr]:
                self.modules[addr] = Module(addr, roster.resources[addr])
        else:
            roster.remove(addr)
            self.modules.pop(addr, None)
        self._rota = list(self.modules.values())
        self._backfill_next = 0
        self.link.write(link.pack(link.L_ROSTER_OK, addr, link.key_check(roster.get(addr, bytes(link.KEY_LEN)))))

    def ota_upstream(self, payload):
        """The mesh root's NEED for an update, to the agent (the root's MeshOta upstream)."""
        self.link.write(link.pack(link.L_OTA, tail=payload))

    def _on_time(self, unix, now):
        # The modules' time comes from the agent too, as a tagged broadcast (edge_agent/broadcasts.py):
        # one the concentrator made itself would carry no tag they could check.
        if abs(self.hal.unix_time() - unix) > 1:
            self.hal.set_unix_time(unix)
        self._time_synced = True

    def _report(self, now):
        sent = 0
        for m in self.modules.values():
            if m.dirty and sent < MODULES_PER_TICK:
                m.dirty = False
                self.link.write(link.pack(link.L_MODULE, m.addr, m.last_heard, m.battery, m.rssi, m.hops,
                                          min(0xFFFF, m.gaps.missing())))
                sent += 1
        if self._last_stats is None or elapsed(now, self._last_stats) >= STATS_MS:
            self._last_stats = now
            self.link.write(link.pack(link.L_STATS, self.link.reader.bad_frames, self.unknown + self.bad_messages,
                                      self.overflow, min(0xFFFF, self.ring.held()), len(self.modules)))

    def next_wakeup(self):
        """Unix time by which tick() must run again."""
        now = self.hal.unix_time()
        if not self.link.agent_seen or self.ring.held() or self.commands or (
                self._ota_ms is not None and elapsed(self.hal.ticks_ms(), self._ota_ms) < OTA_BUSY_MS):
            return now + 1
        return now + IDLE_WAKEUP_S
