"""``balans demo``: one district end to end, real at every joint, on embedded defaults.

Simulated modules count pulses (the real D100FC firmware on a simulated radio mesh)
→ the real J100UC collector → serial line → the edge agent (durable queue, signed
batches) → a real MQTT broker → central ingest into SQLite → the daily balance of
every group and the next-day alerts.

The district is one street of two houses, for electricity and for water. Module 1
holds the street's input meters (and a street standpipe's water meter), modules 2
and 3 the houses' input meters; the other modules are the flats, shared between
the houses. An input meter counts every pulse of its members, as a main meter does.
On the balance day two faults start at midnight: a flat in house B bypasses its
electricity meter (it misses BYPASS_SHARE of its pulses; the house meter does not),
and a cistern in house A runs (LEAK_PULSES_PER_HOUR pulses of 10 L through the
flat's cold-water meter).

The demo checks, and says, that every reading the modules produced was stored
centrally exactly once with the value the module sent; that every group's
imbalance is what was stolen inside it (zero elsewhere); and that the alerts name
the bypassing flat among its house's suspects and the leaking meter.
"""

import json
import os
import secrets
import tempfile
import time
from collections import Counter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from balans.services import find_broker
from central.analytics import alerts
from central.balance import compute, format_table
from central.ingest import Ingestor, MqttIngest
from central.model import from_lists
from central.store import open_store
from edge_agent.agent import Agent
from edge_agent.config import from_dict
from edge_agent.keys import generate, public_pem
from edge_agent.linkport import Pipe
from protocol.batch import Signer, Verifier
from protocol.ids import meter_id
from protocol.obis import code
from simulator.groups import Bypass, Leak, SumSource
from simulator.network import CHANNELS, District

CONC = "c-demo"
AGENT_KID, CENTRAL_KID = b"c-demo-1", b"central-1"
STREET, HOUSE_A, HOUSE_B = "street-1", "house-a", "house-b"
INPUT_MODULES = {1: STREET, 2: HOUSE_A, 3: HOUSE_B}  # the modules on the input meters
INPUT_CHANNELS = {"electricity": 0, "water": 1}  # an input module's channel 2 is a member's water meter
MIN_MODULES = 5  # the input modules and a flat in each house
DAY_S = 86400
# The modules boot at midnight of day 0, so day 0 lacks its first hour and days 1-4
# are whole: the history the analytics learn each meter's and group's normal from.
BALANCE_DAY = 5
DEMO_DAYS = BALANCE_DAY + 1.1  # the balance day, then time for its last reports to arrive
BYPASS_SHARE = 0.4  # of the bypassing flat's electricity pulses that its meter misses
LEAK_PULSES_PER_HOUR = 1.5  # 15 L/h: a running cistern, in every hour at 10 L a pulse
# An input meter's pulse output holds back a pulse that comes too soon after the last
# (simulator.profiles.PulseOutput), so one pulse a level can land in the next day.
TOLERANCE_PULSES = 2


def configure(parser):
    parser.add_argument("--modules", type=int, default=11,
                        help="radio modules (3 meters each): 3 on input meters, the rest in flats (at least %d)"
                        % MIN_MODULES)
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated world")
    parser.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker (default: local, else one started here)")
    parser.add_argument("--db", help="central's SQLite file (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args):
    if args.modules < MIN_MODULES:
        raise SystemExit("balans demo: --modules must be at least %d (3 input modules and a flat in each house)"
                         % MIN_MODULES)
    host, port = None, None
    if args.broker:
        host, _, p = args.broker.partition(":")
        port = int(p) if p else 1883
    summary = run_demo(modules=args.modules, seed=args.seed, broker_host=host, broker_port=port, db=args.db,
                       say=None if args.json else print)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


class StreetLayout:
    """Which meter is which in the demo street, and the simulated meters wired to match.

    ``members[(group, resource)]`` lists the (addr, channel) of the group's member
    meters; a house's input meter is a member of the street's group.
    """

    def __init__(self, addrs):
        flats = [a for a in addrs if a not in INPUT_MODULES]
        self.house_of = {a: (HOUSE_A, HOUSE_B)[i % 2] for i, a in enumerate(flats)}
        self.house_of.update({a: g for a, g in INPUT_MODULES.items() if g != STREET})
        self.house_of[min(INPUT_MODULES)] = STREET  # the standpipe on the street module
        self.inputs = {(g, r): (a, ch) for a, g in INPUT_MODULES.items() for r, ch in INPUT_CHANNELS.items()}
        self.members = {key: [] for key in self.inputs}
        for addr in addrs:
            for ch, spec in enumerate(CHANNELS):
                if addr in INPUT_MODULES and ch == INPUT_CHANNELS.get(spec["resource"]):
                    continue
                self.members[(self.house_of[addr], spec["resource"])].append((addr, ch))
        for house in (HOUSE_A, HOUSE_B):
            for resource in INPUT_CHANNELS:
                self.members[(STREET, resource)].append(self.inputs[(house, resource)])
        self.culprit = self._first_flat(HOUSE_B, "electricity")
        self.leak = self._first_flat(HOUSE_A, "water")

    def _first_flat(self, house, resource):
        return next((a, ch) for a, ch in self.members[(house, resource)] if a not in INPUT_MODULES)

    def group_id(self, group, resource):
        return "%s-%s" % (group, resource)

    def model(self):
        """groups.csv and meters.csv rows (central.model.from_lists) of the street."""
        groups, meters = [], []
        for (group, resource), (addr, ch) in sorted(self.inputs.items(), key=lambda kv: kv[0][0] != STREET):
            parent = "" if group == STREET else self.group_id(STREET, resource)
            groups.append({"group_id": self.group_id(group, resource), "parent_id": parent,
                           "level": "street" if group == STREET else "house", "resource": resource,
                           "input_meter_id": meter_id(addr, ch), "loss_pct": "0", "equipment_w": "0"})
            if group == STREET:
                meters.append({"meter_id": meter_id(addr, ch), "group_id": "", "resource": resource,
                               "pulse_constant": CHANNELS[ch]["pulse_const"]})
        for (group, resource), members in self.members.items():
            for addr, ch in members:
                meters.append({"meter_id": meter_id(addr, ch), "group_id": self.group_id(group, resource),
                               "resource": resource, "pulse_constant": CHANNELS[ch]["pulse_const"]})
        return groups, meters

    def wire(self, district, fault_start):
        """Input meters count their members' pulses; the bypass and the leak start at ``fault_start``.

        Returns the Bypass, whose ``stolen`` says what the house B meter saw and the flat's did not.
        """
        nodes = {n.addr: n for n in district.world.nodes if not n.is_root}
        addr, ch = self.leak
        nodes[addr].sources[ch] = Leak(nodes[addr].sources[ch], fault_start, LEAK_PULSES_PER_HOUR)
        for group in (HOUSE_A, HOUSE_B, STREET):  # houses first: the street's meter sums theirs
            for resource in INPUT_CHANNELS:
                addr, ch = self.inputs[(group, resource)]
                nodes[addr].sources[ch] = SumSource([(nodes[a], c) for a, c in self.members[(group, resource)]])
        addr, ch = self.culprit
        bypass = nodes[addr].sources[ch] = Bypass(nodes[addr].sources[ch], fault_start, BYPASS_SHARE)
        return bypass


class AgentLine:
    """The serial line between the simulated concentrator and the real agent.

    Simulated time runs far faster than real time, so the agent is pumped on this
    thread at every write: it takes the bytes, queues and fsyncs them, and its
    answer (acknowledgement and credit) goes straight back to the collector.
    """

    def __init__(self, pipe, agent, concentrator):
        self.pipe = pipe
        self.agent = agent
        self.concentrator = concentrator

    def __call__(self, data):
        self.pipe.concentrator_end.write(data)
        while self.agent.pump():
            pass
        return self.pipe.concentrator_end.read_all()

    def broadcast(self, payload):
        """The agent sends a broadcast now; its bytes reach the collector's next tick, as on a serial line."""
        self.agent.broadcast(payload)
        self.concentrator.hal.link_in += self.pipe.concentrator_end.read_all()

    def drain(self, timeout):
        """Pump until central has acknowledged everything; True if that happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.agent.pump():
                if self.agent.idle():
                    return True
                time.sleep(0.005)  # waiting for central's acknowledgements over MQTT
        return False


def produced_readings(district):
    """{(meter_id, register, ts): value} of every total register reading the modules sent.

    A module sends each channel's total at every hour boundary of its own clock, in
    a live HOURLY report; these are the readings central must hold exactly once.
    """
    produced = {}
    for (addr, hour), totals in district.recorder.made_totals.items():
        for ch, spec in enumerate(CHANNELS):
            produced[(meter_id(addr, ch), code(spec["resource"]), hour * 3600)] = totals[ch]
    return produced


def run_demo(modules=11, seed=1, broker_host=None, broker_port=None, db=None, say=print, days=DEMO_DAYS):
    say = say or (lambda *a: None)
    tmp = tempfile.TemporaryDirectory(prefix="balans-demo-")
    host, port, how, broker = find_broker(broker_host, broker_port)
    say("MQTT broker: %s" % how)
    try:
        return _run(tmp.name, host, port, broker, modules, seed, db, say, days)
    finally:
        if broker is not None:
            broker.stop()
        tmp.cleanup()


def _run(tmp, host, port, broker, modules, seed, db, say, days):
    t_start = time.perf_counter()
    # Keys: the agent signs batches, central signs acknowledgements.
    agent_key_file = os.path.join(tmp, "agent.pem")
    agent_key = generate(agent_key_file)
    central_key = Ed25519PrivateKey.generate()
    central_pub = os.path.join(tmp, "central.pub")
    with open(central_pub, "wb") as f:
        f.write(public_pem(central_key))

    district = District("block", modules, days, seed)
    street = StreetLayout(sorted(n.addr for n in district.world.nodes if not n.is_root))
    day = district.world.epoch // DAY_S + BALANCE_DAY
    bypass = street.wire(district, day * DAY_S)

    store = open_store(db or os.path.join(tmp, "central.db"))
    groups, meters = street.model()
    store.save_model(from_lists(groups, meters))
    verifier = Verifier()
    verifier.add_key(AGENT_KID, agent_key.public_key(), CONC)
    ingestor = Ingestor(store, verifier, Signer(central_key, CENTRAL_KID))
    # A site of its own: demos that share a broker (a test run beside a user's run) never meet.
    site = "demo-" + secrets.token_hex(4)
    shared = getattr(broker, "shared_subscriptions", True)
    subscriber = MqttIngest(ingestor, host, port, share_group=site if shared else None, site=site).start()

    pipe = Pipe()
    agent = Agent(from_dict({
        "concentrator": {"site": site, "id": CONC},
        "queue": {"dir": os.path.join(tmp, "queue"), "flush_s": 0.01},
        "signing": {"key_file": agent_key_file, "kid": AGENT_KID.decode()},
        "central": {"keys": {CENTRAL_KID.decode(): central_pub}},
        "mqtt": {"host": host, "port": port},
    }), link=pipe.agent_end, clock=lambda: district.world.epoch + district.world.now)  # the agent keeps network time
    agent.open()
    agent.connect()
    try:
        say("simulating %d modules (%d meters) for %.2f days, seed %d ..." % (modules, 3 * modules, days, seed))
        line = district.on_link_bytes = AgentLine(pipe, agent, district.world.nodes[0])
        district.send_ripple = line.broadcast  # ripple control as central would send it: tagged by the agent
        district.run()
        drained = line.drain(timeout=120)
    finally:
        agent.stop()
        subscriber.stop()

    produced = produced_readings(district)
    stored = {}
    dupes = Counter()
    for m, reg, ts, value in store.query("SELECT meter_id, register, ts, value FROM registers"):
        key = (m, reg, int(ts))
        dupes[key] += 1
        stored[key] = int(value)
    wrong = [k for k, v in produced.items() if stored.get(k) != v]

    rows = compute(store, day)
    stolen_kwh = sum(n for h, n in bypass.stolen.items() if h // 24 == day) / CHANNELS[0]["pulse_const"]
    balance, balanced = check_balance(rows, street, stolen_kwh)
    found = alerts(store, day)
    culprit_rank, leak_found = check_alerts(found, street)
    exactly_once = not wrong and len(produced) > 0 and not any(n > 1 for n in dupes.values())
    anchored = sum(1 for n in district.world.nodes if not n.is_root and n.app.broadcasts.anchor is not None)
    refused = store.query("SELECT COUNT(*) FROM events WHERE event IN ('broadcast_refused', 'clock_limited')")[0][0]
    summary = {
        "broker": "%s:%d" % (host, port),
        "modules": modules,
        "meters": 3 * modules,
        "readings_produced": len(produced),
        "readings_stored": sum(1 for k in produced if k in stored),
        "duplicates": sum(n - 1 for n in dupes.values()),
        "wrong_values": len(wrong),
        "agent_drained": bool(drained),
        "exactly_once": exactly_once,
        "day": time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S)),
        "balance": balance,
        "balanced": balanced,
        "stolen_kwh": stolen_kwh,
        "culprit": meter_id(*street.culprit),
        "culprit_rank": culprit_rank,
        "leak_meter": meter_id(*street.leak),
        "leak_found": leak_found,
        "alerts": found,
        "modules_anchored": anchored,
        "broadcasts_refused": refused,
        "ok": exactly_once and balanced and culprit_rank is not None and leak_found and anchored == modules,
        "delivery_ratio": district.figures().get("delivery_ratio"),
        "wall_s": round(time.perf_counter() - t_start, 2),
    }
    store.close()
    report(summary, rows, say)
    return summary


def check_balance(rows, street, stolen_kwh):
    """({group: figures}, True if every group's imbalance is what was stolen inside it)."""
    culprit_group = street.group_id(HOUSE_B, "electricity")
    balance, balanced = {}, len(rows) == len(street.inputs)
    for r in rows:
        expected = stolen_kwh if r["group_id"] == culprit_group else 0.0
        resource = r["group_id"].rsplit("-", 1)[1]
        tolerance = TOLERANCE_PULSES / CHANNELS[INPUT_CHANNELS[resource]]["pulse_const"]
        ok = abs(r["imbalance"] - expected) <= tolerance + 1e-9 and r["completeness"] == 1.0
        balanced = balanced and ok
        balance[r["group_id"]] = {"input": r["input"], "members": r["members"], "imbalance": r["imbalance"],
                                  "expected_imbalance": expected, "completeness": r["completeness"],
                                  "status": r["status"], "as_expected": ok}
    return balance, balanced


def check_alerts(found, street):
    """(the culprit's rank among its house's suspects or None, True if the leak was named)."""
    culprit, group = meter_id(*street.culprit), street.group_id(HOUSE_B, "electricity")
    suspects = [a["point_id"] for a in found if a["kind"] == "suspect" and a["group_id"] == group]
    rank = suspects.index(culprit) + 1 if culprit in suspects else None
    leak = any(a["kind"] == "leak" and a["point_id"] == meter_id(*street.leak) for a in found)
    return rank, leak


def report(summary, rows, say):
    yes = {True: "yes", False: "NO"}
    say("")
    say("daily balance, %s (units: kWh for electricity, m3 for water)" % summary["day"])
    say(format_table(rows))
    say("")
    say("alerts for %s (what an operator finds the next morning):" % summary["day"])
    for a in summary["alerts"]:
        say("  %-13s %-20s %-20s score %7.2f  %s" % (a["kind"], a["point_id"], a["group_id"] or "-", a["score"],
                                                    a["detail"]))
    say("")
    say("readings produced by the modules: %d; stored centrally: %d; duplicates: %d; wrong values: %d"
        % (summary["readings_produced"], summary["readings_stored"], summary["duplicates"], summary["wrong_values"]))
    say("every reading stored exactly once with the value its module sent: %s" % yes[summary["exactly_once"]])
    say("every group's imbalance is what was stolen in it (%.3f kWh in %s, 0 elsewhere): %s"
        % (summary["stolen_kwh"], HOUSE_B, yes[summary["balanced"]]))
    rank = summary["culprit_rank"]
    say("the bypassing flat (meter %s) is among %s's suspects: %s" % (
        summary["culprit"], HOUSE_B, "yes, ranked %d" % rank if rank else "NO"))
    say("the running cistern (meter %s) is named as a leak: %s" % (summary["leak_meter"], yes[summary["leak_found"]]))
    say("modules that take broadcasts only with their uTESLA key: %d of %d; broadcasts refused: %d"
        % (summary["modules_anchored"], summary["modules"], summary["broadcasts_refused"]))
    say("wall time %.1f s" % summary["wall_s"])
