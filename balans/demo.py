"""``balans demo``: one district end to end, real at every joint, on embedded defaults.

Simulated modules count pulses (the real D100FC firmware on a simulated radio mesh)
→ the real J100UC collector → serial line → the edge agent (durable queue, signed
batches) → a real MQTT broker → central ingest into SQLite → hourly consumption and
the daily balance of two balance groups of one house: its electricity and its water.

The house's input meters sit on module 1: channel 0 counts every electricity pulse of
the house, channel 1 every water pulse (as the house's main meters would). With no
losses injected, each group's input must equal the sum of its members, and every
reading the modules produced must be stored centrally exactly once, with the value
the module sent. The demo checks both and says so.
"""

import json
import os
import secrets
import tempfile
import time
from collections import Counter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from balans.services import find_broker
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
from simulator.groups import SumSource
from simulator.network import CHANNELS, District

CONC = "c-demo"
AGENT_KID, CENTRAL_KID = b"c-demo-1", b"central-1"
INPUT_MODULE = 1  # the module on the house's main meters
DAY_S = 86400
# The modules boot at midnight of day 0; day 1 is the first whole day with a reading at each end.
BALANCE_DAY = 1
DEMO_DAYS = 2.1  # the balance day, then two hours for its last reports to arrive


def configure(parser):
    parser.add_argument("--modules", type=int, default=11, help="radio modules in the house (3 meters each)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated world")
    parser.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker (default: local, else one started here)")
    parser.add_argument("--db", help="central's SQLite file (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args):
    host, port = None, None
    if args.broker:
        host, _, p = args.broker.partition(":")
        port = int(p) if p else 1883
    summary = run_demo(modules=args.modules, seed=args.seed, broker_host=host, broker_port=port, db=args.db,
                       say=None if args.json else print)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["exactly_once"] and summary["balanced"] else 1


def house_model(addrs):
    """Groups and meters of the demo house: module INPUT_MODULE holds the input meters."""
    groups, meters = [], []
    for resource, input_channel in (("electricity", 0), ("water", 1)):
        gid = "house-1-" + resource
        groups.append({"group_id": gid, "parent_id": "", "level": "house", "resource": resource,
                       "input_meter_id": meter_id(INPUT_MODULE, input_channel), "loss_pct": "0",
                       "equipment_w": "0"})
        meters.append({"meter_id": meter_id(INPUT_MODULE, input_channel), "group_id": "", "resource": resource,
                       "pulse_constant": CHANNELS[input_channel]["pulse_const"]})
    for addr in addrs:
        for ch, spec in enumerate(CHANNELS):
            if addr == INPUT_MODULE and ch < 2:
                continue
            meters.append({"meter_id": meter_id(addr, ch), "group_id": "house-1-" + spec["resource"],
                           "resource": spec["resource"], "pulse_constant": spec["pulse_const"]})
    return groups, meters


def wire_input_meters(district):
    """Make the input module's channels 0 and 1 count every pulse of the house's other meters."""
    nodes = {n.addr: n for n in district.world.nodes if not n.is_root}
    members = {0: [], 1: []}
    for addr, node in nodes.items():
        for ch, spec in enumerate(CHANNELS):
            if addr == INPUT_MODULE and ch < 2:
                continue
            members[0 if spec["resource"] == "electricity" else 1].append((node, ch))
    house = nodes[INPUT_MODULE]
    for ch in (0, 1):
        house.sources[ch] = SumSource(members[ch])
    return sorted(nodes)


class AgentLine:
    """The serial line between the simulated concentrator and the real agent.

    Simulated time runs far faster than real time, so the agent is pumped on this
    thread at every write: it takes the bytes, queues and fsyncs them, and its
    answer (acknowledgement and credit) goes straight back to the collector.
    """

    def __init__(self, pipe, agent):
        self.pipe = pipe
        self.agent = agent

    def __call__(self, data):
        self.pipe.concentrator_end.write(data)
        while self.agent.pump():
            pass
        return self.pipe.concentrator_end.read_all()

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
    addrs = wire_input_meters(district)

    store = open_store(db or os.path.join(tmp, "central.db"))
    groups, meters = house_model(addrs)
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
        line = district.on_link_bytes = AgentLine(pipe, agent)
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

    day = district.world.epoch // DAY_S + BALANCE_DAY
    rows = compute(store, day)
    balance = {r["group_id"]: {"input": r["input"], "members": r["members"], "imbalance": r["imbalance"],
                               "completeness": r["completeness"]} for r in rows}
    balanced = bool(rows) and all(abs(b["imbalance"]) < 1e-9 and b["completeness"] == 1.0 for b in balance.values())
    summary = {
        "broker": "%s:%d" % (host, port),
        "modules": modules,
        "meters": 3 * modules,
        "readings_produced": len(produced),
        "readings_stored": sum(1 for k in produced if k in stored),
        "duplicates": sum(n - 1 for n in dupes.values()),
        "wrong_values": len(wrong),
        "agent_drained": bool(drained),
        "exactly_once": not wrong and len(produced) > 0 and not any(n > 1 for n in dupes.values()),
        "balanced": balanced,
        "day": time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S)),
        "balance": balance,
        "delivery_ratio": district.figures().get("delivery_ratio"),
        "wall_s": round(time.perf_counter() - t_start, 2),
    }
    store.close()
    say("")
    say("daily balance, %s (units: kWh for electricity, m3 for water)" % summary["day"])
    say(format_table(rows))
    say("")
    say("readings produced by the modules: %d; stored centrally: %d; duplicates: %d; wrong values: %d"
        % (summary["readings_produced"], summary["readings_stored"], summary["duplicates"], len(wrong)))
    say("every reading stored exactly once with the value its module sent: %s; input equals members' sum: %s"
        % ("yes" if summary["exactly_once"] else "NO", "yes" if balanced else "NO"))
    say("wall time %.1f s" % summary["wall_s"])
    return summary
