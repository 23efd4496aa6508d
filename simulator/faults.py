"""Faults struck into a run (``balans simulate --fault KIND``) and how the mesh recovers.

Each fault strikes halfway through the run (after the cold start in a run of
a day), on a victim the run itself picks, so the same seed gives the same
fault:

- ``death``: the busiest relay's battery dies for good (its subtree must find other parents);
- ``burst``: strong outside interference occupies BURST_SHARE of the air for BURST_S
  (a neighbour's faulty transmitter, a nearby alarm system);
- ``restart``: the concentrator is off for RESTART_DOWN_S and boots again
  (a new network generation: every module re-selects and rejoins);
- ``move``: the busiest relay is carried to where another module, chosen by the
  seed, stands (a meter exchanged into another flat).

Recovery is ``rejoin_s``: from the fault's end until every living module again has
a path of living preferred parents that can hear each other up to the
concentrator, and has joined the concentrator's current generation; checked
every CHECK_S. ``delivery_after_fault`` is the first-attempt delivery of the
hourly reports made from the fault on.
"""

import math

from simulator.scenarios import PL_1M_DB

FAULTS = ("death", "burst", "restart", "move")
BURST_S = 600.0  # ten minutes of a jammed channel
BURST_SHARE = 0.5  # half the air: most frames are hit, only strong links get through
RESTART_DOWN_S = 60.0  # a reboot after a power cut: supply, boot, flash checks
MOVED_TO_M = 5.0  # the moved module stands this far from the one whose place it takes
MOVED_EXPONENT = 2.8  # indoor path-loss exponent over those few metres (scenarios.block)
CHECK_S = 5.0


class Fault:
    """One fault scheduled into a District's world, and the watch on the recovery after it."""

    def __init__(self, district, kind):
        if kind not in FAULTS:
            raise ValueError("unknown fault %r (one of %s)" % (kind, ", ".join(FAULTS)))
        self.district = district
        self.kind = kind
        w = district.world
        self.at = w.end / 2.0
        self.ends = self.at + (BURST_S if kind == "burst" else RESTART_DOWN_S if kind == "restart" else 0.0)
        self.victim = None  # address of the node struck (death, move)
        self.recovered_at = None
        w.at(self.at, self._strike)
        w.at(self.ends + CHECK_S, self._check)

    def _busiest(self, w):
        return max((n for n in w.nodes if not n.is_root and n.alive), key=lambda n: n.mesh.relayed)

    def _strike(self, w, _):
        kind = self.kind
        if kind == "death":
            victim = self._busiest(w)
            self.victim = victim.addr
            w.kill(victim)
        elif kind == "burst":
            w.interference_boost = BURST_SHARE
            w.at(self.ends, self._calm)
        elif kind == "restart":
            w.kill(w.nodes[0])
            w.at(self.ends, self._boot_root)
        else:
            victim = self._busiest(w)
            self.victim = victim.addr
            others = [n.index for n in w.nodes if not n.is_root and n is not victim]
            place = others[w.prng.randrange(len(others))]
            row = w.loss_db[place].copy()
            row[place] = PL_1M_DB + 10.0 * MOVED_EXPONENT * math.log10(MOVED_TO_M)
            w.channel.move(victim.index, row)

    @staticmethod
    def _calm(w, _):
        w.interference_boost = 0.0

    def _boot_root(self, w, _):
        w.start_node(w.nodes[0], self.district.app_factory)

    def _check(self, w, _):
        if self.recovered_at is None:
            if self._whole(w):
                self.recovered_at = w.now
            else:
                w.at(w.now + CHECK_S, self._check)

    @staticmethod
    def _whole(w):
        """Every living module reaches the concentrator over living parents that hear each other,
        and has joined the concentrator's current generation."""
        root = w.nodes[0]
        version = root.mesh.routing.version
        hears = w.channel.neighbours
        for node in w.nodes[1:]:
            if not node.alive:
                continue
            mesh = node.mesh
            if not mesh.joined or mesh.routing.version != version:
                return False
            hops = 0
            while node is not root:
                parent = node.mesh.routing.preferred
                if parent is None or hops > 64:
                    return False
                up = w.by_addr[parent.addr]
                if not up.alive or node.index not in hears[up.index] or up.index not in hears[node.index]:
                    return False
                node = up
                hops += 1
        return True

    def figures(self, recorder):
        made = [k for k, t in recorder.made.items() if self.at <= t <= recorder.horizon()]
        delivered = sum(1 for k in made if k in recorder.first_hourly)
        return {
            "fault": self.kind,
            "fault_at_s": self.at,
            "fault_victim": self.victim,
            "rejoin_s": None if self.recovered_at is None else round(self.recovered_at - self.ends, 1),
            "delivery_after_fault": delivered / len(made) if made else None,
        }
