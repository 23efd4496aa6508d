"""Load limits and the relay (demand-side management).

The relay is closed (secondary load connected) unless one of three reasons
holds it open: a remote disconnect, a load limit exceeded, or a ripple-control
group shed. Each limit is in pulses per hour for one channel and one tariff
(0: every tariff); the supplier's and the customer's both apply, so the
strictest non-zero one wins. Demand is measured over WINDOW_S: once it is above
the limit the relay sheds; it reconnects (policy "auto") after the reconnect
delay and only once demand is below the limit by the hysteresis, or (policy
"manual") only on a remote RELAY_CLOSE or RELAY_AUTO.
"""

from protocol import messages
from protocol.compat import const

WINDOW_S = const(60)  # demand measuring window, like a limiter's min_over_threshold_duration
SOURCES = const(2)  # 0 supplier, 1 customer
SLOTS = const(5)  # tariff 0 (all) and 1..4
CHANNELS = const(3)
FOREVER = const(0xFFFFFFFF)  # a group shed without a duration

# Why the relay moved (EVENT value = cause * 2 + closed); also the bit of each reason to be open
CAUSE_LIMIT = const(1)
CAUSE_REMOTE = const(2)
CAUSE_GROUP = const(3)


class LoadControl:
    def __init__(self, hysteresis_pct=10, reconnect_delay_s=300, auto_reconnect=True):
        self.limits = [0] * (SOURCES * CHANNELS * SLOTS)
        self.groups = []
        self.hysteresis_pct = hysteresis_pct
        self.reconnect_delay_s = reconnect_delay_s
        self.auto_reconnect = auto_reconnect
        self.remote_open = False
        self.limit_shed = False
        self.shed_until = 0  # group shed in force until this unix time (FOREVER: until restored)
        self.reconnect_at = 0

    def set_limit(self, source, channel, tariff, limit):
        self.limits[(source * CHANNELS + channel) * SLOTS + tariff] = limit

    def limit(self, channel, tariff):
        """The strictest limit for ``channel`` under ``tariff``, 0 if none."""
        best = 0
        for source in range(SOURCES):
            base = (source * CHANNELS + channel) * SLOTS
            for v in (self.limits[base], self.limits[base + tariff]):
                if v and (not best or v < best):
                    best = v
        return best

    def any_limit(self):
        return any(self.limits)

    def open_reasons(self, now):
        """Bit (1 << cause) for every reason that holds the relay open now; 0: closed."""
        return (((1 << CAUSE_LIMIT) if self.limit_shed else 0) | ((1 << CAUSE_REMOTE) if self.remote_open else 0)
                | ((1 << CAUSE_GROUP) if now < self.shed_until else 0))

    def check(self, now, demand, tariff):
        """Apply per-hour ``demand`` per channel; return the channel over its limit, or None."""
        over = None
        margin_ok = True
        for ch in range(CHANNELS):
            lim = self.limit(ch, tariff)
            if not lim:
                continue
            if demand[ch] > lim:
                over = ch
            if demand[ch] * 100 > lim * (100 - self.hysteresis_pct):
                margin_ok = False
        if over is not None:
            if not self.limit_shed:
                self.limit_shed = True
                self.reconnect_at = now + self.reconnect_delay_s
            return over
        if self.limit_shed and self.auto_reconnect and now >= self.reconnect_at and margin_ok:
            self.limit_shed = False
        return None

    def relay_command(self, action):
        """Remote RELAY: open (disconnect), close (reconnect, clearing a limit shed) or auto."""
        self.remote_open = action == messages.RELAY_OPEN
        if action == messages.RELAY_CLOSE:
            self.limit_shed = False

    def group_command(self, now, group, shed, duration_s):
        """Ripple control; returns False when this module is not in ``group``."""
        if group not in self.groups:
            return False
        if shed:
            self.shed_until = now + duration_s if duration_s else FOREVER
        else:
            self.shed_until = 0
        return True

    def next_event(self, now):
        """When a timer of ours runs out, or None."""
        t = None
        if self.shed_until and self.shed_until != FOREVER and self.shed_until > now:
            t = self.shed_until
        if self.limit_shed and self.auto_reconnect and self.reconnect_at > now and (t is None or self.reconnect_at < t):
            t = self.reconnect_at
        return t
