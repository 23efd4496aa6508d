"""Which broadcasts a module acts on, and when: docs/firmware.md, "What a broadcast may do".

A broadcast is sealed under the network key, which every module holds, so the seal proves
nothing about who sent it. Two levels of trust:

- A module the agent has given a uTESLA anchor (SET_ANCHOR, under its own key) acts only on
  TAGGED broadcasts, after the key of their interval is disclosed and checks out
  (protocol/tesla.py). Untagged ones are refused.
- A module without one yet acts on ripple control at once and lets a broadcast move its set
  clock by at most CLOCK_SLEW_S net, so a stolen network key shifts tariffs by a minute a day.

Nothing but GROUP_CMD and TIME_SYNC is ever taken from a broadcast: relays, limits,
calendars and backfills come one module at a time, under that module's key.

``BroadcastGate.take(payload, uptime_s)`` answers with what the module should do, a list of
(ACT_GROUP, GroupCmd), (ACT_CLOCK, unix), (ACT_REFUSED, message type), (ACT_LIMITED, step asked).
"""

from firmware.common.records import RecordStore
from firmware.d100fc.pulses import WRAP
from protocol import messages as m
from protocol import tesla
from protocol.compat import const
from protocol.errors import ProtocolError

ACT_GROUP = const(1)
ACT_CLOCK = const(2)
ACT_REFUSED = const(3)
ACT_LIMITED = const(4)
CLOCK_VALID_AFTER = const(1577836800)  # 2020-01-01: a clock before this was never set
# How far untagged broadcasts may move a set clock, net, and how fast that allowance comes back
# (per day of uptime). Honest syncs need far less: a +-20 ppm crystal drifts under 2 s a day,
# and a broadcast's 1-10 s of travel averages out.
CLOCK_SLEW_S = const(60)
DAY_S = const(86400)
PENDING_MAX = const(4)  # tagged broadcasts waiting for their key: ripple commands come minutes apart


class BroadcastGate:
    def __init__(self, hal, flash_dir):
        self.hal = hal
        self._store = RecordStore(flash_dir, "anchor")
        saved = self._store.load()
        # the SET_ANCHOR it was given, its interval and key moved forward to the newest key checked
        self.anchor = m.SetAnchor.decode(saved) if saved else None
        self.pending = []  # [(interval, tag, payload, ticks_ms at receipt)], oldest first
        self._slewed = 0  # net seconds untagged broadcasts moved the clock, leaking back to 0 at CLOCK_SLEW_S a day
        self._slew_s = 0  # uptime (s) up to which the leak is counted
        self._slew_told = False  # ACT_LIMITED answered for the current run of limited steps

    def set_anchor(self, msg):
        """SET_ANCHOR from the agent (under the module key): the chain to check tagged broadcasts against."""
        a = self.anchor
        if a is not None and a.start == msg.start:  # the agent's daily repeat of the same chain
            if msg.interval <= a.interval:
                return  # a key as new was checked here already
        else:
            self.pending = []  # tags of another chain can never check out
        self.anchor = msg
        self._save()

    def take(self, payload, uptime_s):
        try:
            msg = m.decode(payload)
        except ProtocolError:
            return ()
        kind = type(msg)
        if kind is m.Tagged:
            return self._tagged(msg, uptime_s)
        if kind is m.Disclose:
            return self._disclosed(msg)
        if kind is m.TimeSync and (self.anchor is None or self.hal.unix_time() < CLOCK_VALID_AFTER):
            return self._slew_limited(msg.unix, uptime_s)  # whole on a clock never set: it has nothing better
        if kind is m.GroupCmd and self.anchor is None:
            return ((ACT_GROUP, msg),)
        return ((ACT_REFUSED, payload[0]),)

    def _tagged(self, msg, uptime_s):
        now = self.hal.unix_time()
        a = self.anchor
        if a is None or now < CLOCK_VALID_AFTER:
            # Nothing to check the tag against (not commissioned, or a clock that cannot tell
            # an interval): the message inside gets the untagged rules.
            return self.take(msg.payload, uptime_s)
        if msg.interval <= a.interval or not tesla.undisclosed(a.start, msg.interval, now):
            return ((ACT_REFUSED, m.Tagged.TYPE),)  # its key may be out: anyone could have made it
        if len(self.pending) >= PENDING_MAX:
            self.pending.pop(0)
        self.pending.append((msg.interval, msg.tag, msg.payload, self.hal.ticks_ms()))
        return ()

    def _disclosed(self, msg):
        """A key is out: check it against the anchor, then the tags of the broadcasts waiting for it."""
        waiting = [p for p in self.pending if p[0] <= msg.interval]
        # Hashing a key forward costs up to a SHA-256 per interval since the anchor: only for a
        # key something waits for, so a forger's stream of keys cannot run the battery down.
        a = self.anchor
        if not waiting or not tesla.reaches(msg.key, msg.interval - a.interval, a.key):
            return ()
        a.interval, a.key = msg.interval, msg.key
        self._save()
        self.pending = [p for p in self.pending if p[0] > msg.interval]
        acts = []
        now_ms = self.hal.ticks_ms()
        for interval, tag, payload, ticks in waiting:
            key = tesla.earlier(msg.key, msg.interval - interval)  # a lost disclosure's key: an earlier link
            if tesla.tag(key, interval, payload) != tag:
                acts.append((ACT_REFUSED, m.Tagged.TYPE))
                continue
            inner = m.decode(payload)
            if type(inner) is m.GroupCmd:
                acts.append((ACT_GROUP, inner))
            else:  # the time it said, plus the time it waited here for its key
                acts.append((ACT_CLOCK, inner.unix + ((now_ms - ticks) & WRAP) // 1000))
        return acts

    def _slew_limited(self, unix, uptime_s):
        """The time an untagged broadcast may set: anything on a clock never set, else within CLOCK_SLEW_S net."""
        old = self.hal.unix_time()
        if old < CLOCK_VALID_AFTER:
            return ((ACT_CLOCK, unix),)
        leak = (uptime_s - self._slew_s) * CLOCK_SLEW_S // DAY_S
        if leak:
            self._slew_s += leak * DAY_S // CLOCK_SLEW_S
            self._slewed = max(0, self._slewed - leak) if self._slewed > 0 else min(0, self._slewed + leak)
        asked = unix - old
        step = max(-CLOCK_SLEW_S - self._slewed, min(CLOCK_SLEW_S - self._slewed, asked))
        self._slewed += step
        acts = [(ACT_CLOCK, old + step)]
        if step == asked:
            self._slew_told = False
        elif not self._slew_told:  # once per run of limited steps: 240 modules report it at once
            self._slew_told = True
            acts.append((ACT_LIMITED, asked))
        return acts

    def _save(self):
        self._store.save(self.anchor.encode())
