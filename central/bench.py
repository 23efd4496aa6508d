"""Benchmarks of central: ``detect`` (how well the analytics find injected faults) and
``central`` (import and balance 1,000,000 meters × 7 days against a raw bulk load)."""

import os
import tempfile
import time
import uuid

import numpy as np

from central import synth
from central.analytics import HISTORY_DAYS, find_alerts
from central.balance import Window
from central.model import from_lists
from central.store import HOURS

# Which alert kinds count as finding which injected fault.
FOUND_BY = {"theft": ("suspect",), "slow": ("suspect",), "stopped": ("stopped_meter", "suspect"),
            "unmetered": ("imbalance",), "leak": ("leak",)}
MONTH_DAYS = 30
LEAK_DEADLINE_DAYS = 2  # the alerts on the leak's first day or the next: within 48 h of its start
DETECT_SIZE = {False: (10000, 28), True: (2000, 14)}  # flats and test days; --quick: the smaller
CSV_SIZE = {False: (2500, 14), True: (600, 7)}  # the same for detect_csv, whose CSV path is slower


def detect(args):
    """Run the analytics on every test day of a synthetic district and score them against the truth."""
    quick = getattr(args, "quick", False)
    d, days, t_gen, t_alerts = detect_run(getattr(args, "seed", 1) or 1, quick)
    flats, test_days = DETECT_SIZE[quick]
    figures = score(d, days)
    figures.update(meters=len(d.meters), flats=flats, test_days=test_days,
                   generate_s=round(t_gen, 2), alerts_s_per_day=round(t_alerts / test_days, 3))
    return figures


def detect_run(seed, quick=False):
    """The detection benchmark's district and its alerts: (district, {day: alerts}, generate_s, alerts_s)."""
    flats, test_days = DETECT_SIZE[quick]
    t0 = time.perf_counter()
    d = synth.district(flats=flats, history_days=HISTORY_DAYS, test_days=test_days, seed=seed)
    t_gen = time.perf_counter() - t0
    model = from_lists(d.groups, d.meters)
    quality = d.quality()
    days = {}
    t0 = time.perf_counter()
    for k in range(d.history_days, d.ndays):
        cols = slice((k - HISTORY_DAYS) * HOURS, (k + 1) * HOURS)
        window = Window(model, d.day0 + k - HISTORY_DAYS, d.values[:, cols], quality[:, cols])
        day = d.day0 + k
        events = [e for e in d.events if day * 86400 <= e[1] < (day + 1) * 86400]
        days[day] = find_alerts(model, window, events)
    return d, days, t_gen, time.perf_counter() - t0


def detect_csv(args):
    """The same scores on a district built another way (central/appliances.py), through the CSV
    interface and the CLI only, as an outside tool would judge the analytics."""
    import contextlib
    import io
    import json

    from balans.cli import main
    from central import appliances
    from central.balance import day_text

    quick = getattr(args, "quick", False)
    flats, test_days = CSV_SIZE[quick]
    t0 = time.perf_counter()
    d = appliances.district(flats=flats, history_days=HISTORY_DAYS, test_days=test_days,
                            seed=getattr(args, "seed", 1) or 1)
    t_gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        d.write_csv(tmp)
        db = os.path.join(tmp, "balans.db")

        def cli(*argv):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                if main(["central", "--db", db] + list(argv)):
                    raise RuntimeError("balans central %s refused lines of the district's CSV" % argv[0])
            return out.getvalue()

        t0 = time.perf_counter()
        cli("import", "--groups", os.path.join(tmp, "groups.csv"), "--meters", os.path.join(tmp, "meters.csv"))
        cli("import", "--readings", os.path.join(tmp, "readings.csv"), "--events", os.path.join(tmp, "events.csv"))
        t_import = time.perf_counter() - t0
        days = {}
        t0 = time.perf_counter()
        for day in range(d.day0 + d.history_days, d.day0 + d.ndays):
            days[day] = json.loads(cli("alerts", "--day", day_text(day), "--format", "json"))["alerts"]
        t_alerts = time.perf_counter() - t0
    figures = score(d, days)
    figures.update(meters=len(d.meters), flats=(len(d.meters) - len(d.groups)) // 2, test_days=test_days,
                   generate_s=round(t_gen, 2), import_s=round(t_import, 2),
                   alerts_s_per_day=round(t_alerts / test_days, 3))
    return figures


def score(d, days):
    """Per fault kind: recall, precision, top-1/top-3 the next day, within 3 days, detection delay."""
    by_point = {}
    for f in d.faults:
        by_point.setdefault(f["point_id"], []).append(f)
    faulty_groups = {}
    for f in d.faults:
        if f["kind"] != "leak":
            faulty_groups.setdefault(f["group_id"], []).append(f)
    suspects = ranked_suspects(days)
    out = {}
    n_meters = len(d.meters)
    for kind in ("theft", "stopped", "slow", "unmetered", "leak"):
        faults = [f for f in d.faults if f["kind"] == kind]
        if not faults:
            continue
        delays, top1, top3, within3 = [], 0, 0, 0
        for f in faults:
            o = f["onset"]
            ranked = lambda day: suspects.get((day, f["group_id"]), [])  # noqa: E731
            if kind in ("theft", "slow", "stopped"):
                ranks = culprit_ranks(f, suspects)
                top1 += ranks[0] == 1
                top3 += 0 < ranks[0] <= 3
                within3 += any(0 < r <= 3 for r in ranks)
            first = [day for day in sorted(days) if day >= o and _found(kind, f, days[day], ranked(day))]
            if first and (kind != "leak" or first[0] - o < LEAK_DEADLINE_DAYS):
                delays.append(first[0] - o + 1)  # data of day o are judged the next morning
        n = len(faults)
        out["%s_n" % kind] = n
        out["%s_recall" % kind] = round(len(delays) / n, 4)
        if kind in ("theft", "slow", "stopped"):
            out["%s_top1_next_day" % kind] = round(top1 / n, 4)
            out["%s_top3_next_day" % kind] = round(top3 / n, 4)
            out["%s_top3_within_3_days" % kind] = round(within3 / n, 4)
        out["%s_delay_days_median" % kind] = float(np.median(delays)) if delays else None
        out["%s_delay_days_max" % kind] = max(delays) if delays else None
    false = 0
    for kind in ("imbalance", "suspect", "stopped_meter", "leak", "tamper"):
        alerted = {(a["point_id"], a["group_id"], day) for day, alerts in days.items() for a in alerts
                   if a["kind"] == kind}
        true_points, points, excused = set(), set(), set()
        for p, g, day in alerted:
            points.add(p)
            if _true_alert(kind, p, day, by_point, faulty_groups):
                true_points.add(p)
            elif kind == "suspect" and any(_began(f) <= day for f in faulty_groups.get(g, [])):
                excused.add(p)  # ranked below the culprit in a group that does have a fault
        out["%s_precision" % kind] = round(len(true_points) / len(points), 4) if points else None
        false += len(points - true_points - excused)
    # A false alert names a point (or group) where nothing was wrong; the other members
    # listed after the culprit of a faulty group are not counted.
    # each way of stealing on its own (the floors are for all of them together)
    for how in sorted({f["how"] for f in d.faults if f["kind"] == "theft"}):
        ranks = [culprit_ranks(f, suspects) for f in d.faults if f["how"] == how and f["kind"] == "theft"]
        out["theft_%s_top3_next_day" % how] = round(np.mean([0 < r[0] <= 3 for r in ranks]), 4)
        out["theft_%s_top3_within_3_days" % how] = round(np.mean([any(0 < x <= 3 for x in r) for r in ranks]), 4)
    out["false_alerts_per_1000_meters_month"] = round(false / n_meters * 1000 * MONTH_DAYS / len(days), 3)
    return out


def culprit_ranks(f, suspects, ndays=3):
    """The fault's point's rank among its group's suspects on its first ``ndays`` days (0: not listed)."""
    ranks = []
    for k in range(ndays):
        listed = suspects.get((f["onset"] + k, f["group_id"]), [])
        ranks.append(listed.index(f["point_id"]) + 1 if f["point_id"] in listed else 0)
    return ranks


def ranked_suspects(days):
    """{(day, group): suspects' point ids in rank order} from the alerts of each day."""
    suspects = {}
    for day, alerts in days.items():
        for a in alerts:
            if a["kind"] == "suspect":
                suspects.setdefault((day, a["group_id"]), []).append(a["point_id"])
    return suspects


def _found(kind, f, alerts, ranked):
    if kind in ("theft", "slow", "stopped") and f["point_id"] in ranked[:3]:
        return True
    return any(a["kind"] in FOUND_BY[kind] and a["point_id"] == f["point_id"] for a in alerts)


def _true_alert(kind, point, day, by_point, faulty_groups):
    if kind == "imbalance":
        return any(_began(f) <= day for f in faulty_groups.get(point, []))
    wanted = {"suspect": ("theft", "slow", "stopped"), "stopped_meter": ("stopped", "theft", "slow"),
              "leak": ("leak",), "tamper": ("theft",)}[kind]
    return any(f["kind"] in wanted and _began(f) <= day + (kind == "tamper") for f in by_point.get(point, []))


def _began(f):
    """The first day a fault touches: its onset, or the day before it when it began within a day."""
    return f.get("began", f["onset"])


FULL_METERS, QUICK_METERS = 1_000_000, 20_000
BENCH_DAYS = 7
TARGET_METERS = 10_000_000


def _option(args, name, env, default):
    """A benchmark option: ``--name`` where balans bench offers it, else $env, else the default."""
    value = getattr(args, name, None) or os.environ.get(env)
    return default if value in (None, "") else value


def central(args):
    """Import N meters × D days of hourly values, compute every balance and alert; beside a raw bulk load."""
    quick = getattr(args, "quick", False)
    n = int(_option(args, "meters", "BALANS_BENCH_METERS", QUICK_METERS if quick else FULL_METERS))
    ndays = int(_option(args, "days", "BALANS_BENCH_DAYS", BENCH_DAYS))
    db = _option(args, "db", "BALANS_BENCH_DB", "")
    with _scratch_store(db) as (store, backend):
        return _central(store, backend, n, ndays)


class _scratch_store:
    """A store of its own for one run: a temporary SQLite file, or a temporary PostgreSQL database."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        from central.store import open_store

        if self.db.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.name = "balans_bench_%s" % uuid.uuid4().hex[:8]
            with psycopg.connect(self.db, autocommit=True) as admin:
                admin.execute("CREATE DATABASE %s" % self.name)
            self.store = open_store(self.db.rsplit("/", 1)[0] + "/" + self.name)
            return self.store, "postgresql"
        self.dir = tempfile.TemporaryDirectory(prefix="balans-bench-", dir=self.db or None)
        self.store = open_store(os.path.join(self.dir.name, "bench.db"))
        return self.store, "sqlite"

    def __exit__(self, *exc):
        self.store.close()
        if hasattr(self, "name"):
            import psycopg

            with psycopg.connect(self.db, autocommit=True) as admin:
                admin.execute("DROP DATABASE %s" % self.name)
        else:
            self.dir.cleanup()


def bench_model(n_flats):
    """Groups and meters of a city-sized tree: 25 flats an entrance, 4 entrances a house, 10 houses a street."""
    groups, meters = [], []
    n_ent = -(-n_flats // 25)
    n_house = -(-n_ent // 4)
    n_street = -(-n_house // 10)
    groups.append(dict(group_id="C", parent_id="", level="city", resource="electricity", input_meter_id="CI"))
    meters.append(dict(meter_id="CI", group_id="", resource="electricity"))
    for level, prefix, count, parent, per in (("street", "S", n_street, lambda i: "C", 1),
                                              ("house", "H", n_house, lambda i: "S%d" % (i // 10), 10),
                                              ("entrance", "E", n_ent, lambda i: "H%d" % (i // 4), 4)):
        for i in range(count):
            groups.append(dict(group_id="%s%d" % (prefix, i), parent_id=parent(i), level=level,
                               resource="electricity", input_meter_id="%sI%d" % (prefix, i)))
            meters.append(dict(meter_id="%sI%d" % (prefix, i), group_id=parent(i), resource="electricity"))
    meters += [dict(meter_id="m%d" % i, group_id="E%d" % (i // 25), resource="electricity") for i in range(n_flats)]
    return groups, meters


def _central(store, backend, n, ndays):
    from central import analytics
    from central.balance import Balances, Structure

    rng = np.random.default_rng(7)
    groups, meters = bench_model(n)
    model = from_lists(groups, meters)
    day0 = synth.EPOCH_DAY
    t = time.perf_counter()
    days = []
    for k in range(ndays):
        v = rng.lognormal(-1.0, 0.6, (len(meters), HOURS)) * synth.SHAPE[None, :]
        days.append(np.round(v, 3))
    gen_s = time.perf_counter() - t
    rows = np.arange(len(meters))
    _inputs_from_members(Structure(model), days)

    raw_load_s = _raw_load(store, backend, rows, day0, days)

    cpu = time.process_time()
    t = time.perf_counter()
    store.save_model(model)
    model = store.load_model()
    refused = 0
    for k, values in enumerate(days):
        refused += store.import_day(day0 + k, rows, values)
    import_s = time.perf_counter() - t

    t = time.perf_counter()
    window = Window.load(store, day0, ndays, model)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    balances = Balances(Structure(model), window)
    n_rows = sum(len(balances.daily(day0 + k)) for k in range(ndays))
    balance_s = time.perf_counter() - t
    t = time.perf_counter()
    alerts = analytics.find_alerts(model, window, balances=balances)  # a nightly run computes them once
    alerts_s = time.perf_counter() - t
    total_s = import_s + load_s + balance_s + alerts_s
    cpu_s = time.process_time() - cpu  # this process's CPU: steadier than wall time on a shared machine
    values = len(meters) * ndays * HOURS
    return {"backend": backend, "meters": len(meters), "groups": len(groups), "days": ndays,
            "values": values, "generate_s": round(gen_s, 2), "raw_load_s": round(raw_load_s, 2),
            "import_s": round(import_s, 2), "load_s": round(load_s, 2), "balance_s": round(balance_s, 2),
            "alerts_s": round(alerts_s, 2), "total_s": round(total_s, 2), "cpu_s": round(cpu_s, 2),
            "import_vs_raw": round(import_s / raw_load_s, 3) if raw_load_s else None,
            "values_per_s": round(values / total_s), "daily_balance_rows": n_rows, "alerts": len(alerts),
            "refused_values": refused,
            "projected_10m_s": round(total_s * TARGET_METERS / len(meters), 1)}


def _inputs_from_members(s, days):
    """Make each input meter read its members' sum plus 1 % losses, lowest level first."""
    from central.balance import group_sums

    depth = {}
    for gid, g in s.model.groups.items():
        d, p = 0, g.parent
        while p:
            d, p = d + 1, s.model.groups[p].parent
        depth[gid] = d
    order = sorted(range(s.n_groups), key=lambda g: -depth[s.group_ids[g]])
    for values in days:
        for level in sorted(set(depth.values()), reverse=True):
            gs = [g for g in order if depth[s.group_ids[g]] == level]
            sums = group_sums(s.member_g, s.member_m, values, s.n_groups)
            values[s.input_m[np.isin(s.input_g, gs)]] = sums[s.input_g[np.isin(s.input_g, gs)]] * 1.01


def _raw_load(store, backend, rows, day0, days):
    """The same meter-day rows into a bare table (no key, no merge): executemany or binary COPY."""
    from central.store import MEASURED, copy_rows, pack_day

    quality = np.full(HOURS, MEASURED, np.uint8)
    t = time.perf_counter()
    with store.transaction():
        store.execute("CREATE TABLE raw_day_values (meter_idx INTEGER, day INTEGER, vals %s, quality %s)"
                      % ((store.types["blob"],) * 2))
        for k, values in enumerate(days):
            batch = ((int(r), day0 + k) + pack_day(v, quality) for r, v in zip(rows, values))
            if backend == "postgresql":
                with store.conn.cursor() as cur:
                    copy_rows(cur, "raw_day_values", batch)
            else:
                store.executemany("INSERT INTO raw_day_values VALUES (?,?,?,?)", batch)
    elapsed = time.perf_counter() - t
    with store.transaction():
        store.execute("DROP TABLE raw_day_values")
    return elapsed


# A concentrator's backlog after an outage: batches of 20 meters × 6 hourly readings each,
# signed like the agent's, handled one commit each and then BATCHES_PER_COMMIT a commit.
INGEST_BATCHES, INGEST_METERS, INGEST_HOURS = 400, 20, 6


def ingest(args):
    """Batches per second into the store: one transaction per batch against grouped commits."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from central.ingest import BATCHES_PER_COMMIT, Ingestor
    from protocol import obis
    from protocol.batch import Batch, Record, Signer, Verifier

    n = INGEST_BATCHES // 4 if getattr(args, "quick", False) else INGEST_BATCHES
    db = _option(args, "db", "BALANS_BENCH_DB", "")
    conc_key = Ed25519PrivateKey.generate()
    signer = Signer(conc_key, b"bench")
    kwh, t0 = obis.code("electricity"), synth.EPOCH_DAY * 86400
    # ten concentrator rounds of the same meters, each INGEST_HOURS later than the one before
    rounds = n // 10
    messages = [("balans/v1/bench/c-0001/batch", signer.sign(Batch("c-0001", 1, b + 1, [
        Record("m%d" % (b % 10 * INGEST_METERS + i), t0 + (b // 10 * INGEST_HOURS + h) * 3600, kwh,
               1000 * (b // 10 * INGEST_HOURS + h)) for i in range(INGEST_METERS) for h in range(INGEST_HOURS)])))
        for b in range(rounds * 10)]
    groups = [dict(group_id="H", parent_id="", level="house", resource="electricity", input_meter_id="HI")]
    meters = [dict(meter_id="HI", group_id="", resource="electricity")] + [
        dict(meter_id="m%d" % i, group_id="H", resource="electricity") for i in range(10 * INGEST_METERS)]
    figures = {}
    for name, per_commit in (("one", 1), ("grouped", BATCHES_PER_COMMIT)):
        with _scratch_store(db) as (store, backend):
            store.save_model(from_lists(groups, meters))
            verifier = Verifier()
            verifier.add_key(b"bench", conc_key.public_key(), "c-0001")
            ingestor = Ingestor(store, verifier, Signer(Ed25519PrivateKey.generate(), b"central"))
            t = time.perf_counter()
            for k in range(0, len(messages), per_commit):
                stored = [a.status for a in ingestor.handle_many(messages[k:k + per_commit])]
                assert stored == ["stored"] * len(stored), stored
            figures["batches_per_s_%s" % name] = round(len(messages) / (time.perf_counter() - t), 1)
    figures.update(backend=backend, batches=len(messages), readings_per_batch=INGEST_METERS * INGEST_HOURS,
                   batches_per_commit=BATCHES_PER_COMMIT,
                   grouped_vs_one=round(figures["batches_per_s_grouped"] / figures["batches_per_s_one"], 2))
    return figures


BENCHMARKS = {"detect": detect, "detect_csv": detect_csv, "central": central, "ingest": ingest}
