"""The figures of ``balans simulate``, gathered from the world's events and the nodes' counters."""

import math
from bisect import bisect_left

from firmware.common.mesh.node import REPORT_SPREAD_MS
from protocol import messages
from protocol.frame import T_ACK, T_BCAST, T_BEACON, T_DATA, T_JOIN
from protocol.tesla import DISCLOSE_AFTER, INTERVAL_S
from simulator.energy import battery_years

HOUR = 3600
COLD_START_S = 2 * HOUR  # a cold network's joining: kept out of completeness and steady-state currents
# A tagged broadcast's uTESLA key is disclosed 40 s after it (docs/firmware.md, "What a broadcast may do"):
# a module with an anchor refuses it when it comes later, so a ripple command has reached only the modules
# that got it within this time (broadcast_reached_40s); broadcast_reached counts whatever came by the end.
BROADCAST_IN_TIME_S = DISCLOSE_AFTER * INTERVAL_S  # 40 s


class Recorder:
    """Listens to a World: reports made and stored, broadcasts sent and heard, pulses produced."""

    def __init__(self, world):
        self.world = world
        self.made = {}  # (addr, hour) -> world time of a live HOURLY leaving the module
        self.made_totals = {}  # (addr, hour) -> the channel totals that HOURLY carried
        self.stored = {}  # (addr, hour) -> first world time the concentrator had that hour's data
        self.first_hourly = set()  # (addr, hour) received as live reports
        self.broadcasts = {}  # payload -> world time sent
        self.heard = {}  # payload -> {addr: world time}
        self.truth = {}  # (addr, channel, unix hour) -> pulses
        world.listeners.append(self.event)
        if COLD_START_S < world.end:
            world.at(COLD_START_S, self._settle)

    @staticmethod
    def _settle(world, _):
        """The cold start is over: currents from now on are the steady state a battery lives on."""
        for n in world.nodes:
            n.meter.settle(world.now)

    def event(self, name, **data):
        if name == "pulses":  # times are sorted: count them an hour at a time
            addr, ch, times = data["node"].addr, data["channel"], data["times"]
            truth = self.truth
            i = 0
            for hour in range(int(times[0] // HOUR), int(times[-1] // HOUR) + 1):
                j = bisect_left(times, (hour + 1) * HOUR, i)
                if j > i:
                    key = (addr, ch, hour)
                    truth[key] = truth.get(key, 0) + j - i
                i = j

    def made_report(self, addr, payload, backfill):
        if payload and payload[0] == messages.Hourly.TYPE and not backfill:
            msg = messages.Hourly.decode(payload)
            self.made[(addr, msg.hour)] = self.world.now
            self.made_totals[(addr, msg.hour)] = msg.totals

    def arrived(self, addr, payload, backfill):
        if not payload or payload[0] != messages.Hourly.TYPE:
            return
        msg = messages.Hourly.decode(payload)
        if not backfill:
            self.first_hourly.add((addr, msg.hour))
        now = self.world.now
        for hour in (msg.hour - 1, msg.hour - 2):  # the hours its totals and deltas complete
            if msg.hour - hour == 1 or msg.delta(0, 2) is not None:
                self.stored.setdefault((addr, hour), now)

    def broadcast_sent(self, payload):
        self.broadcasts[payload] = self.world.now
        self.heard[payload] = {}

    def broadcast_heard(self, addr, payload):
        seen = self.heard.get(payload)
        if seen is not None and addr not in seen:
            seen[addr] = self.world.now

    def horizon(self):
        """Reports made after this world time may still wait out their spread or travel: not judged."""
        return self.world.now - REPORT_SPREAD_MS / 1000.0 - 600.0

    def figures(self, wall_s):
        w = self.world
        modules = [n for n in w.nodes if not n.is_root]
        alive = [n for n in modules if n.alive]
        days = w.now / 86400.0
        horizon = self.horizon()
        made = [k for k, t in self.made.items() if t <= horizon]
        delivered = sum(1 for k in made if k in self.first_hourly)
        # daily completeness: meter-hours stored by 02:00 the next day (or the run's end)
        first_hour = int((w.epoch + COLD_START_S) // HOUR)
        last_hour = int((w.epoch + w.now) // HOUR) - 2
        due = got = 0
        for n in alive:
            for hour in range(first_hour, last_hour):
                deadline = ((hour * HOUR) // 86400 + 1) * 86400 + 2 * HOUR - w.epoch
                due += 1
                t = self.stored.get((n.addr, hour))
                if t is not None and t <= min(deadline, w.now):
                    got += 1
        latencies, expected = [], 0
        for payload, sent in self.broadcasts.items():
            seen = self.heard[payload]
            expected += len(alive)
            latencies.extend(seen[n.addr] - sent for n in alive if n.addr in seen)
        reached = len(latencies)
        in_time = sum(1 for t in latencies if t <= BROADCAST_IN_TIME_S)
        latencies.sort()
        busiest = max(modules, key=lambda n: n.mesh.relayed)
        life = [battery_years(n.meter.average_ua(w.now)) for n in alive]
        weakest = max(alive, key=lambda n: n.meter.average_ua(w.now))
        acked = sum(n.mesh.acked for n in w.nodes)
        attempts = acked + sum(n.mesh.retries + n.mesh.dropped for n in w.nodes)
        total = sum(w.frames_by_kind.values()) or 1
        data = w.frames_by_kind.get(T_DATA, 0) + w.frames_by_kind.get(T_BCAST, 0)
        acks = w.frames_by_kind.get(T_ACK, 0)
        joined = [n.joined_at for n in modules]
        return {
            "scenario": getattr(w, "scenario", ""),
            "nodes": len(modules),
            "days": round(days, 3),
            "seed": w.seed,
            "depth_max": max(n.mesh.routing.depth for n in alive if n.mesh.routing.preferred is not None),
            "delivery_ratio": delivered / len(made) if made else 0.0,
            "per_hop_delivery": acked / attempts if attempts else 0.0,
            "daily_completeness": got / due if due else None,  # None: the run is too short to judge
            "broadcast_median_s": _quantile(latencies, 0.5),
            "broadcast_p95_s": _quantile(latencies, 0.95),
            "broadcast_max_s": latencies[-1] if latencies else None,
            "broadcast_reached": reached / expected if expected else None,  # None: no broadcast was sent
            "broadcast_reached_40s": in_time / expected if expected else None,
            "relayed_per_day_max": busiest.mesh.relayed / days if days else 0.0,
            "busiest_current_ua": busiest.meter.average_ua(w.now),
            "battery_years_busiest": battery_years(busiest.meter.average_ua(w.now)),
            "battery_years_min": min(life) if life else 0.0,
            "cold_start_mah_max": max(n.meter.settling_mah() for n in modules),
            "duty_cycle_max": max(_max_hour_duty(n.minute_tx) for n in w.nodes),
            "control_overhead": (total - data - acks) / total,
            "ack_share": acks / total,
            "control_per_node_day": (total - data - acks) / len(modules) / days if days else 0.0,
            "join_time_s": max(joined) if all(t is not None for t in joined) else None,
            "joined": sum(t is not None for t in joined) / len(modules),
            "wall_s": wall_s,
            "air_frames": {_KIND_NAMES.get(k, k): v for k, v in sorted(w.frames_by_kind.items())},
            "unicast_losses": {"%s/%s" % (_KIND_NAMES.get(k, k), cause): v
                               for (k, cause), v in sorted(w.losses.items())},
            "busiest": _station_counters(busiest, w.now),
            "weakest": _station_counters(weakest, w.now),  # the module whose battery lasts least
        }


_KIND_NAMES = {T_ACK: "ack", T_BCAST: "bcast", T_DATA: "data", T_BEACON: "beacon", T_JOIN: "join"}


def _station_counters(node, now):
    """A node's mesh counters and where its charge went: what a diagnosis starts from."""
    m, e = node.mesh, node.meter
    return {"addr": node.addr, "depth": m.routing.depth, "relayed": m.relayed, "sent": m.sent,
            "retries": m.retries, "dropped": m.dropped, "queue_full": m.queue_full,
            "duty_refused": m.duty_refused, "tx_mas": round(e.tx_mas), "rx_mas": round(e.rx_mas),
            "mcu_mas": round(e.mcu_mas), "search_mas": round(e.search_mas),
            "charge_ua": {what: round(ua, 2) for what, ua in sorted(e.breakdown_ua(now).items(), key=lambda kv: -kv[1])}}


def _quantile(values, q):
    if not values:
        return None
    return values[min(len(values) - 1, int(math.ceil(q * len(values))) - 1)]


def _max_hour_duty(minute_tx):
    """Highest transmit share in any 60 consecutive minutes."""
    if not minute_tx:
        return 0.0
    best = 0.0
    minutes = sorted(minute_tx)
    for start in minutes:
        s = sum(minute_tx.get(m, 0.0) for m in range(start, start + 60))
        best = max(best, s)
    return best / 3600.0
