"""``balans agent ...`` (run, status, check, keygen) and ``balans diag ...`` (the mesh as the agent sees it).

``status`` and ``diag`` read ``status.json``, which the running agent rewrites in
its queue directory every [status] interval_s, so they work without a broker.
"""

import json
import logging
import os
import signal
import threading
import time

from edge_agent import config as agent_config
from edge_agent import keys

DEFAULT_CONFIG = "/etc/balans/agent.toml"
log = logging.getLogger("balans.agent")


def _add_config(p):
    p.add_argument("--config", default=os.environ.get("BALANS_AGENT_CONFIG", DEFAULT_CONFIG),
                   help="agent TOML file (default %(default)s, or $BALANS_AGENT_CONFIG)")


def configure_agent(parser):
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("run", help="run the agent in the foreground (what the systemd unit does)")
    _add_config(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("status", help="queue depth, oldest unsent age, link and MQTT state")
    _add_config(p)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("check", help="validate a config file and its key files")
    _add_config(p)
    p = sub.add_parser("requeue", help="send again the batches central rejected (e.g. before it knew our key)")
    _add_config(p)
    p.add_argument("files", nargs="*", help="rejected-*.cbor files to send again (default: every one)")
    p = sub.add_parser("update", help="queue a signed firmware update (.bota) for the concentrator's modules")
    _add_config(p)
    p.add_argument("bundle", help="the vendor's signed release, e.g. release.bota")
    p.add_argument("--module", action="append", default=[], metavar="ADDR",
                   help="a module's 4 hex digits (at most 17, repeat the option); default: every module")
    p = sub.add_parser("modules", help="the concentrator's module table: add the modules installers provisioned")
    msub = p.add_subparsers(dest="modules_action", required=True, metavar="WHAT")
    q = msub.add_parser("add", help="add (or re-key) the modules of a provisioning record")
    _add_config(q)
    q.add_argument("--keys", required=True, help="the installer's keys.csv (device_id,key)")
    q.add_argument("--meters", required=True, help="the installer's meters.csv (meter_id,...,resource,...)")
    q = msub.add_parser("remove", help="stop serving a module (its key is deleted on the concentrator)")
    _add_config(q)
    q.add_argument("module", help="the module's 4 hex digits, e.g. 002a")
    _add_config(msub.add_parser("list", help="the table, and what the concentrator holds (from status.json)"))
    p = sub.add_parser("keygen", help="write a new Ed25519 signing key (key rotation: new file, new kid)")
    p.add_argument("private", help="private key file to write (mode 0600)")
    p.add_argument("--public", help="also write the public key here (give it to central)")


def run_agent(args):
    if args.action == "keygen":
        if os.path.exists(args.private):
            raise ValueError("%s exists: refusing to overwrite a signing key" % args.private)
        key = keys.generate(args.private, args.public)
        print(keys.public_pem(key).decode(), end="")
        return 0
    cfg = agent_config.load(args.config)
    if args.action == "update":
        return _queue_update(cfg, args.bundle, args.module)
    if args.action == "modules":
        return _modules(cfg, args)
    if args.action == "check":
        keys.load_private(cfg.signing.key_file)
        for path in cfg.central.keys.values():
            keys.load_public(path)
        if cfg.ota.vendor_key:
            from edge_agent.updates import read_vendor_key

            read_vendor_key(cfg.ota.vendor_key)
        print("%s: valid (site %s, concentrator %s, queue %s)" % (args.config, cfg.concentrator.site,
                                                                  cfg.concentrator.id, cfg.queue.dir))
        return 0
    if args.action == "requeue":
        return _requeue(cfg, args.files)
    if args.action == "status":
        status = _read_status(cfg.queue.dir)
        if args.json:
            print(json.dumps(status, indent=1))
        else:
            _print_status(status)
        return 0
    return _serve(cfg, args.verbose)


def _queue_update(cfg, path, modules):
    """Check a bundle like a signed update command and queue it where the running agent picks it up."""
    from edge_agent.updates import Updates, read_vendor_key

    try:
        targets = [int(m, 16) for m in modules]
    except ValueError:
        raise ValueError("--module takes a module's 4 hex digits, e.g. 002a") from None
    with open(path, "rb") as f:
        data = f.read()
    vendor_key = read_vendor_key(cfg.ota.vendor_key) if cfg.ota.vendor_key else None
    job = Updates(cfg.queue.dir, vendor_key).submit(data, targets, "file %s" % os.path.basename(path))
    print("update %d queued: seq %d for %s" % (job["id"], job["seq"],
                                              ", ".join("%04x" % a for a in targets) or "every module"))
    return 0


def _modules(cfg, args):
    """Change roster.json, which the running agent delivers to the concentrator (edge_agent/roster.py)."""
    from edge_agent.roster import Roster, read_csv

    roster = Roster(cfg.queue.dir)
    if args.modules_action == "add":
        modules = read_csv(args.keys, args.meters)
        roster.add(modules)
        print("%d modules added to %s; the agent sends them to the concentrator" % (len(modules), roster.path))
    elif args.modules_action == "remove":
        roster.remove(args.module.lower())
        print("module %s removed; the agent tells the concentrator" % args.module.lower())
    else:
        try:
            held = (_read_status(cfg.queue.dir).get("roster") or {}).get("pending")
        except RuntimeError:  # the agent has not run yet
            held = None
        for addr, m in sorted(roster.load().items()):
            if int(m["key"], 16):
                state = "?" if held is None else ("pending" if addr in held else "held")
                print("%s  %-40s %s" % (addr, ",".join(r or "-" for r in m["resources"]), state))
    return 0


def _serve(cfg, verbose):
    from edge_agent.agent import Agent
    from edge_agent.systemd import Notifier

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    systemd = Notifier()
    agent = Agent(cfg).start()
    systemd.ready("concentrator %s, queue %s" % (cfg.concentrator.id, cfg.queue.dir))
    try:
        supervise(agent, systemd, done)
    finally:
        systemd.stopping()
        agent.stop()
    return 0


def supervise(agent, systemd, done):
    """Until ``done`` is set, ping systemd's watchdog at half its period while the agent's pump moves.

    A pump that has not come round for half a period is hung (a blocked serial
    read, a deadlock): the pings stop and systemd restarts the agent.
    """
    period = systemd.watchdog_s / 2 if systemd.watchdog_s else None
    while not done.wait(period):
        stuck = time.monotonic() - agent.looped_at
        if stuck < period:
            systemd.alive()
        else:
            log.error("the agent's pump has not come round for %.0f s", stuck)


def _requeue(cfg, files):
    """Move rejected batches where the agent (running now, or at its next start) sends them again."""
    from edge_agent.agent import REJECTED_DIR, REQUEUE_DIR

    rejected = os.path.join(cfg.queue.dir, REJECTED_DIR)
    if files:
        names = files
    elif os.path.isdir(rejected):
        names = sorted(n for n in os.listdir(rejected) if n.startswith("rejected-"))
    else:
        names = []
    if not names:
        print("no rejected batches in %s" % rejected)
        return 0
    target = os.path.join(cfg.queue.dir, REQUEUE_DIR)
    os.makedirs(target, exist_ok=True)
    for name in names:
        source = name if os.path.dirname(name) else os.path.join(rejected, name)
        if not os.path.isfile(source):
            raise ValueError("%s: no such rejected batch" % source)
        os.replace(source, os.path.join(target, os.path.basename(source)))
    print("%d batch(es) will be sent again within [status] interval_s (%.0f s) of a running agent"
          % (len(names), cfg.status.interval_s))
    return 0


def _read_status(queue_dir):
    path = os.path.join(queue_dir, "status.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RuntimeError("no %s: is the agent running with this config?" % path) from None


def _print_status(s):
    q, m = s["queue"], s.get("mqtt") or {}
    age = q["oldest_age_s"]
    print("concentrator %s/%s  agent boot %d  as of %s" % (s["site"], s["conc"], s["boot"],
                                                         time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["ts"]))))
    print("queue    %d batches, %d readings, %.1f of %.1f MB%s; oldest unsent %s" % (
        q["batches"], q["records"], q["bytes"] / 1e6, q["max_bytes"] / 1e6, " FULL" if q["full"] else "",
        "-" if age is None else "%d s" % age))
    print("         thinned %d readings, refused %d appends, corrupt %d records, torn tails %d" % (
        q["thinned_records"], q["refused_appends"], q["corrupt_records"], q["torn_tails"]))
    print("mqtt     %s (connects %s, disconnects %s)" % (
        "connected" if m.get("connected") else "DISCONNECTED", m.get("connects"), m.get("disconnects")))
    link = s.get("link")
    if link:
        print("link     %d readings in, %d good / %d bad frames, concentrator boot %d %s" % (
            link["records_in"], link["good_frames"], link["bad_frames"], link["concentrator_boot"],
            link.get("concentrator") or ""))
    c = s["counters"]
    print("central  %d sent, %d acks (%d duplicate, %d rejected), %d forged acks refused" % (
        c["batches_sent"], c["acks"], c["acks_duplicate"], c["acks_rejected"], c["acks_forged"]))
    print("commands %d forwarded, %d refused, %d results" % (c["commands_forwarded"], c["commands_refused"],
                                                         c["results"]))
    mods = s["modules"]
    print("modules  %d known, silent: %s, battery low: %s" % (mods["known"], ", ".join(mods["silent"]) or "none",
                                                            ", ".join(mods["battery_low"]) or "none"))


def configure_diag(parser):
    _add_config(parser)
    parser.add_argument("view", choices=("network", "silent", "battery", "gaps"),
                        help="network: modules by hop depth with link quality; silent: not heard for --hours; "
                             "battery: weakest first; gaps: hours being backfilled")
    parser.add_argument("--hours", type=float, default=None, help="silent view: hours without a report "
                        "(default: [status] silent_hours)")


def run_diag(args):
    cfg = agent_config.load(args.config)
    s = _read_status(cfg.queue.dir)
    table = s.get("module_table", {})
    now = s["ts"]
    rows = sorted(table.items())
    if args.view == "network":
        rows.sort(key=lambda kv: (kv[1]["hops"], kv[0]))
        print("%-6s %4s %6s %8s %s" % ("module", "hops", "rssi", "battery", "last heard"))
        for addr, m in rows:
            print("%-6s %4d %6d %8s %s" % (addr, m["hops"], m["rssi"], _volts(m), _ago(now, m["last_heard"])))
    elif args.view == "silent":
        hours = args.hours if args.hours is not None else cfg.status.silent_hours
        silent = [(a, m) for a, m in rows if now - m["last_heard"] > hours * 3600]
        print("%d of %d modules silent for more than %g h" % (len(silent), len(rows), hours))
        for addr, m in silent:
            print("%-6s last heard %s" % (addr, _ago(now, m["last_heard"])))
    elif args.view == "battery":
        rows = [kv for kv in rows if kv[1]["battery_v"]]
        rows.sort(key=lambda kv: kv[1]["battery_v"])
        for addr, m in rows:
            low = " LOW" if m["battery_v"] < cfg.status.battery_low_v else ""
            print("%-6s %s%s" % (addr, _volts(m), low))
    else:
        gaps = [(a, m) for a, m in rows if m["missing_hours"]]
        print("%d modules with hours being backfilled" % len(gaps))
        for addr, m in gaps:
            print("%-6s %d hours missing" % (addr, m["missing_hours"]))
    return 0


def _volts(m):
    return "-" if not m["battery_v"] else "%.2f V" % m["battery_v"]


def _ago(now, then):
    if not then:
        return "never"
    return "%.1f h ago" % ((now - then) / 3600)


COMMANDS = [
    ("agent", "run and inspect the edge agent (durable queue, signed batches over MQTT)", configure_agent, run_agent),
    ("diag", "the concentrator's mesh as the agent sees it: hops, silent modules, batteries, gaps",
     configure_diag, run_diag),
]
