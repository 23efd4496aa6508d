"""``balans central ...``: import, balance, alerts, concentrator keys and the ingest service (docs/central.md)."""

import json
import os
import signal
import sys
import threading
import time

from central import balance
from central.errors import ImportFailed


def configure(parser):
    parser.add_argument("--db", default=os.environ.get("BALANS_DB", "balans.db"),
                        help="SQLite path or postgresql:// URL (default $BALANS_DB or ./balans.db)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("import", help="import groups, meters, hourly readings or events from CSV")
    p.add_argument("--groups", help="groups.csv: group_id,parent_id,level,resource,input_meter_id,loss_pct")
    p.add_argument("--meters", help="meters.csv: meter_id,group_id,resource")
    p.add_argument("--readings", help="readings.csv: meter_id,hour_start,value")
    p.add_argument("--events", help="events.csv: meter_id,ts,event")
    p = sub.add_parser("balance", help="daily or hourly balance of every group, or one")
    p.add_argument("--day", required=True, help="YYYY-MM-DD (UTC)")
    p.add_argument("--group", help="only this group")
    p.add_argument("--hourly", action="store_true", help="one row per hour instead of one per day")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = sub.add_parser("alerts", help="the alerts an operator reads the next morning")
    p.add_argument("--day", required=True, help="YYYY-MM-DD (UTC): the day the data close")
    p.add_argument("--format", choices=("table", "json"), default="json")
    p = sub.add_parser("keys", help="the concentrator keys batches are verified against")
    keys = p.add_subparsers(dest="keys_action", required=True, metavar="KEYS_ACTION")
    k = keys.add_parser("add", help="trust a concentrator's public key (from balans agent keygen --public)")
    k.add_argument("--conc", required=True, help="the concentrator id its batches carry")
    k.add_argument("--kid", required=True, help="the key id in its agent.toml [signing] kid")
    k.add_argument("--public", required=True, metavar="FILE", help="its public key (PEM)")
    k = keys.add_parser("revoke", help="stop trusting a key (running ingest follows within a minute)")
    k.add_argument("--kid", required=True)
    k = keys.add_parser("list", help="every key, in force or revoked")
    k.add_argument("--json", action="store_true")
    p = sub.add_parser("ingest", help="run an ingest worker: batches in from MQTT, signed acks out (a service)")
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST[:PORT]")
    p.add_argument("--key", required=True, metavar="FILE", help="central's private key that signs the acks")
    p.add_argument("--kid", required=True, help="its key id (the agents' [central] keys name it)")
    p.add_argument("--site", default="+", help="only this site's concentrators (default: all)")
    p.add_argument("--ca-file", help="connect over TLS, trusting this CA")
    p.add_argument("--username", help="the broker's login")
    p.add_argument("--password-file", help="file holding the broker password")
    p = sub.add_parser("quarantine", help="the newest refused batches and why")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")


def run(args):
    from central.store import open_store

    store = open_store(args.db)
    try:
        return ACTIONS[args.action](store, args)
    finally:
        store.close()


def do_import(store, args):
    from central import csvio
    from central.ingest import derive_registered

    if not (args.groups or args.meters or args.readings or args.events):
        raise ValueError("name at least one of --groups, --meters, --readings, --events")
    errors = []
    try:
        if args.groups or args.meters:
            model = store.load_model()
            errors += csvio.import_model(model, args.groups, args.meters)
            store.save_model(model)
            print("model: %d groups, %d meters" % (len(model.groups), len(model.meters)))
            if args.meters:
                with store.transaction():  # readings that came before their meter was registered
                    model = store.load_model()
                    derived = derive_registered(store, model, model.meters)
                if derived:
                    print("registers: %d derived again from stored readings" % derived)
        model = store.load_model()
        if args.readings:
            (rows, hours, values), errs = csvio.read_readings(args.readings, model.meter_index())
            errors += errs
            days = store.put_hourly(rows, hours, values)
            print("readings: %d hourly values on %d days" % (len(rows), len(days)))
        if args.events:
            events, errs = csvio.read_events(args.events, model.meters)
            errors += errs
            with store.transaction():
                store.add_events(events)
            print("events: %d" % len(events))
    except ImportFailed as e:
        errors += e.errors
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print("%d line(s) refused; every other line was imported" % len(errors), file=sys.stderr)
    return 1 if errors else 0


def do_balance(store, args):
    rows = balance.compute(store, args.day, group=args.group, hourly=args.hourly)
    if args.format == "json":
        print(json.dumps({"day": args.day, "balances": rows}))
    else:
        print(balance.format_table(rows))
    return 0


def do_alerts(store, args):
    from central import analytics

    alerts = analytics.alerts(store, args.day)
    if args.format == "json":
        print(json.dumps({"day": args.day, "alerts": alerts}))
    else:
        for a in alerts:
            print("%-14s %-16s %-14s %8.3f  %s" % (a["kind"], a["point_id"], a["group_id"] or "-", a["score"],
                                                  a["detail"]))
    return 0


def do_keys(store, args):
    from central.trust import parse_public_key

    if args.keys_action == "add":
        with open(args.public, "rb") as f:
            pem = f.read()
        try:
            parse_public_key(pem)
        except ValueError as e:
            raise ValueError("%s: %s" % (args.public, e)) from None
        with store.transaction():
            store.add_concentrator_key(args.kid, args.conc, pem.decode())
        print("trusting key %s for concentrator %s" % (args.kid, args.conc))
    elif args.keys_action == "revoke":
        with store.transaction():
            if not store.revoke_concentrator_key(args.kid):
                raise ValueError("no key %r in force" % args.kid)
        print("key %s revoked: batches signed with it are refused from now on" % args.kid)
    else:
        rows = [{"kid": kid, "conc": conc, "added": added, "revoked": revoked}
                for kid, conc, _, added, revoked in store.concentrator_keys()]
        if args.json:
            print(json.dumps(rows))
        for r in [] if args.json else rows:
            print("%-24s %-16s added %s%s" % (r["kid"], r["conc"], _utc(r["added"]),
                                              "  REVOKED " + _utc(r["revoked"]) if r["revoked"] else ""))
    return 0


def do_ingest(store, args):
    """Run until SIGTERM/SIGINT; a batch is acknowledged only after its commit (central/ingest.py)."""
    from central.ingest import Ingestor, MqttIngest
    from central.trust import StoreVerifier
    from edge_agent.keys import load_private
    from protocol.batch import Signer

    host, _, port = args.broker.partition(":")
    password = None
    if args.password_file:
        with open(args.password_file) as f:
            password = f.read().strip()
    verifier = StoreVerifier(store)
    if not verifier.kids:
        print("warning: no concentrator keys registered (balans central keys add): every batch is refused",
              file=sys.stderr)
    ingestor = Ingestor(store, verifier, Signer(load_private(args.key), args.kid.encode()))
    worker = MqttIngest(ingestor, host, int(port or 1883), site=args.site, ca_file=args.ca_file,
                        username=args.username, password=password)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    worker.start()
    print("ingesting %s on %s (keys: %s)" % (worker.subscription, args.broker, ", ".join(sorted(verifier.kids))),
          flush=True)
    try:
        done.wait()
    finally:
        worker.stop()
    print("stopped after %d batches" % worker.handled)
    return 0


def do_quarantine(store, args):
    rows = [{"received": r, "topic": t, "reason": why, "bytes": n} for r, t, why, n in store.quarantine_log(args.limit)]
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        print("%s  %-40s %6d bytes  %s" % (_utc(r["received"]), r["topic"], r["bytes"], r["reason"]))
    return 0


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


ACTIONS = {"import": do_import, "balance": do_balance, "alerts": do_alerts, "keys": do_keys, "ingest": do_ingest,
           "quarantine": do_quarantine}

COMMANDS = [("central", "central store: import CSVs, balances, next-day alerts, concentrator keys, ingest service",
             configure, run)]
