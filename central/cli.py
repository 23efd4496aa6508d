"""``balans central ...``: import, balance and alerts for operators (docs/central.md)."""

import json
import os
import sys

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


ACTIONS = {"import": do_import, "balance": do_balance, "alerts": do_alerts}

COMMANDS = [("central", "central store: import CSVs, balances of groups, next-day alerts", configure, run)]
