"""The central store: SQLite (WAL) by default, PostgreSQL (psycopg 3) for scale.

``open_store(url_or_path)`` picks the backend: a ``postgresql://`` URL or a file path.
Both share one schema and one set of queries; only types, bulk loading and
placeholders differ.

Layout (compact: one row per meter-day, not per reading):

- ``day_values(meter_idx, day, vals, quality)``: 24 hourly values of one meter on one
  UTC day as little-endian float64 (NaN where missing) and 24 quality bytes
  (``MISSING``, ``MEASURED``, ``INTERPOLATED``, ``ESTIMATED``). Only measured values and
  spans derived from two exact register readings are stored; gap estimates are made
  when data are read (``central.vee``), so an estimate is never stored as a measurement.
- ``registers``: every register reading from batches, as exact integers of pulses.
- ``batches``: the dedup keys (conc, boot, seq) of stored batches; ``quarantine``: the
  refused ones with their reason; ``events``; ``replacements``; ``stale_days`` (days
  whose balances late data changed); ``concentrator_keys``: the public keys batches are
  verified against (kid, concentrator, PEM; a revoked key stays listed with its time).
"""

import contextlib
import os
import sqlite3
import threading
import time

import numpy as np

from central.model import Group, Meter, Model

HOURS = 24
DAY_S = 86400

# Quality of one hourly value, one byte each in day_values.quality.
MISSING = 0
MEASURED = 1
INTERPOLATED = 2
ESTIMATED = 3
QUALITY_NAMES = {MISSING: "missing", MEASURED: "measured", INTERPOLATED: "interpolated", ESTIMATED: "estimated"}

VALUE_DTYPE = np.dtype("<f8")
MAX_REGISTER = (1 << 63) - 1  # both backends store registers as signed 64-bit integers

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY, parent_id TEXT, level TEXT NOT NULL, resource TEXT NOT NULL,
    input_meter_ids TEXT NOT NULL, loss_pct {real} NOT NULL, loss_model TEXT NOT NULL,
    equipment_w {real}, threshold_pct {real} NOT NULL);
CREATE TABLE IF NOT EXISTS meters (
    idx INTEGER PRIMARY KEY, meter_id TEXT UNIQUE NOT NULL, group_id TEXT, resource TEXT NOT NULL,
    pulse_constant {real} NOT NULL, rollover BIGINT);
CREATE TABLE IF NOT EXISTS day_values (
    meter_idx INTEGER NOT NULL, day INTEGER NOT NULL, vals {blob} NOT NULL, quality {blob} NOT NULL,
    PRIMARY KEY (day, meter_idx)){clustered};
CREATE TABLE IF NOT EXISTS registers (
    meter_id TEXT NOT NULL, register TEXT NOT NULL, ts BIGINT NOT NULL, value BIGINT NOT NULL,
    PRIMARY KEY (meter_id, register, ts));
CREATE TABLE IF NOT EXISTS events (
    meter_id TEXT NOT NULL, ts BIGINT NOT NULL, event TEXT NOT NULL, value BIGINT NOT NULL,
    PRIMARY KEY (meter_id, ts, event));
CREATE TABLE IF NOT EXISTS batches (
    conc TEXT NOT NULL, boot BIGINT NOT NULL, seq TEXT NOT NULL, received BIGINT NOT NULL,
    records INTEGER NOT NULL, PRIMARY KEY (conc, boot, seq));
CREATE TABLE IF NOT EXISTS quarantine (
    id {serial}, received BIGINT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, payload {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS replacements (
    meter_id TEXT NOT NULL, ts BIGINT NOT NULL, final_old BIGINT NOT NULL, start_new BIGINT NOT NULL,
    PRIMARY KEY (meter_id, ts));
CREATE TABLE IF NOT EXISTS stale_days (day INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS concentrator_keys (
    kid TEXT PRIMARY KEY, conc TEXT NOT NULL, public_pem TEXT NOT NULL, added BIGINT NOT NULL, revoked BIGINT)
"""


def open_store(url_or_path=None):
    """Open (and create if needed) the store at an SQLite path or a ``postgresql://`` URL.

    Without an argument: ``$BALANS_DB``, else ``./balans.db``.
    """
    target = url_or_path or os.environ.get("BALANS_DB") or "balans.db"
    if str(target).startswith(("postgresql://", "postgres://")):
        return PostgresStore(str(target))
    return SqliteStore(str(target))


def pack_day(values, quality):
    """The stored blobs of one meter-day: 24 float64 values and 24 quality bytes."""
    return (np.ascontiguousarray(values, dtype=VALUE_DTYPE).tobytes(),
            np.ascontiguousarray(quality, dtype=np.uint8).tobytes())


class Store:
    """What both backends share. Every write happens inside ``transaction()``."""

    placeholder = "?"
    # WITHOUT ROWID: the rows live in the key's B-tree, written once, not in a table and an index.
    types = {"real": "REAL", "blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
             "clustered": " WITHOUT ROWID"}

    def __init__(self):
        self._lock = threading.RLock()
        for statement in SCHEMA.format(**self.types).split(";"):
            self._execute(statement)

    # -- plumbing the backends fill in -------------------------------------------------
    def _sql(self, text):
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _execute(self, sql, params=()):
        return self.conn.execute(self._sql(sql), params)

    def query(self, sql, params=()):
        with self._lock:
            return list(self._execute(sql, params).fetchall())

    def execute(self, sql, params=()):
        """Run one statement (inside a transaction); return the number of rows it changed."""
        return self._execute(sql, params).rowcount

    def executemany(self, sql, rows):
        with self._lock:
            self.conn.cursor().executemany(self._sql(sql), rows)

    # -- model --------------------------------------------------------------------------
    def save_model(self, model):
        """Insert or update every group and meter; meters already stored keep their row index."""
        with self.transaction():
            self.executemany(
                "INSERT INTO groups VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (group_id) DO UPDATE SET "
                "parent_id=excluded.parent_id, level=excluded.level, resource=excluded.resource, "
                "input_meter_ids=excluded.input_meter_ids, loss_pct=excluded.loss_pct, "
                "loss_model=excluded.loss_model, equipment_w=excluded.equipment_w, "
                "threshold_pct=excluded.threshold_pct",
                [(g.id, g.parent, g.level, g.resource, ";".join(g.inputs), g.loss_pct, g.loss_model,
                  g.equipment_w, g.threshold_pct) for g in model.groups.values()])
            known = dict(self.query("SELECT meter_id, idx FROM meters"))
            next_idx = len(known)
            rows = []
            for m in model.meters.values():
                idx = known.get(m.id)
                if idx is None:
                    idx, next_idx = next_idx, next_idx + 1
                rows.append((idx, m.id, m.group, m.resource, m.pulse_constant, m.rollover))
            self.executemany(
                "INSERT INTO meters VALUES (?,?,?,?,?,?) ON CONFLICT (meter_id) DO UPDATE SET "
                "group_id=excluded.group_id, resource=excluded.resource, "
                "pulse_constant=excluded.pulse_constant, rollover=excluded.rollover", rows)

    def load_model(self):
        """The stored Model; its meter order is the row order of every value matrix."""
        model = Model()
        for gid, parent, level, resource, inputs, loss_pct, loss_model, equip, threshold in self.query(
                "SELECT group_id, parent_id, level, resource, input_meter_ids, loss_pct, loss_model, "
                "equipment_w, threshold_pct FROM groups ORDER BY group_id"):
            model.groups[gid] = Group(gid, parent, level, resource, [i for i in inputs.split(";") if i],
                                      loss_pct, loss_model, equip, threshold)
        for _, mid, gid, resource, pulse_constant, rollover in self.query(
                "SELECT idx, meter_id, group_id, resource, pulse_constant, rollover FROM meters ORDER BY idx"):
            model.meters[mid] = Meter(mid, gid, resource, pulse_constant, rollover)
        return model

    # -- hourly values ------------------------------------------------------------------
    def put_hourly(self, rows, hours, values, quality=None):
        """Store hourly values (meter rows, unix hours, values) over what is stored; return touched days.

        Other hours of the same meter-days keep their stored values.
        """
        rows, hours = np.asarray(rows, dtype=np.int64), np.asarray(hours, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        quality = np.full(len(rows), MEASURED, np.uint8) if quality is None else np.asarray(quality, np.uint8)
        days = hours // HOURS
        touched = np.unique(days)
        with self.transaction():
            for day in touched.tolist():
                sel = days == day
                meters, inverse = np.unique(rows[sel], return_inverse=True)
                vals, qual = self.load_day(day, meters)
                vals[inverse, hours[sel] % HOURS] = values[sel]
                qual[inverse, hours[sel] % HOURS] = quality[sel]
                self.put_day_rows(day, meters, vals, qual)
            self.mark_stale(touched.tolist())
        return touched.tolist()

    def load_day(self, day, meters):
        """(values, quality) of ``meters`` (sorted row indexes) on ``day``: NaN/MISSING where not stored."""
        vals = np.full((len(meters), HOURS), np.nan)
        qual = np.zeros((len(meters), HOURS), np.uint8)
        if len(meters) == 0:
            return vals, qual
        lo, hi = int(meters[0]), int(meters[-1])
        found = self._day_rows("SELECT meter_idx, vals, quality FROM day_values WHERE day = ? "
                               "AND meter_idx BETWEEN ? AND ?", (int(day), lo, hi))
        if found:
            idx = np.fromiter((r[0] for r in found), np.int64, len(found))
            pos = np.searchsorted(meters, idx)
            keep = (pos < len(meters)) & (meters[np.minimum(pos, len(meters) - 1)] == idx)
            v = np.frombuffer(b"".join(r[1] for r in found), VALUE_DTYPE).reshape(-1, HOURS)
            q = np.frombuffer(b"".join(r[2] for r in found), np.uint8).reshape(-1, HOURS)
            vals[pos[keep]] = v[keep]
            qual[pos[keep]] = q[keep]
        return vals, qual

    def load_days(self, day0, ndays, n_meters):
        """(values [n_meters, ndays*24] with NaN where missing, quality) of days day0..day0+ndays-1."""
        vals = np.full((n_meters, ndays * HOURS), np.nan)
        qual = np.zeros((n_meters, ndays * HOURS), np.uint8)
        for k in range(ndays):
            found = self._day_rows("SELECT meter_idx, vals, quality FROM day_values WHERE day = ?",
                                   (int(day0 + k),))
            if not found:
                continue
            idx = np.fromiter((r[0] for r in found), np.int64, len(found))
            keep = idx < n_meters
            cols = slice(k * HOURS, (k + 1) * HOURS)
            vals[idx[keep], cols] = np.frombuffer(b"".join(r[1] for r in found), VALUE_DTYPE).reshape(-1, HOURS)[keep]
            qual[idx[keep], cols] = np.frombuffer(b"".join(r[2] for r in found), np.uint8).reshape(-1, HOURS)[keep]
        return vals, qual

    def _day_rows(self, sql, params):
        return self.query(sql, params)

    def put_day_rows(self, day, meters, values, quality):
        """Write whole meter-days (replacing what was stored) for ``meters`` on ``day``."""
        vals, qual = pack_day(values, quality)
        v, q, day = VALUE_DTYPE.itemsize * HOURS, HOURS, int(day)
        self._write_day_rows([(m, day, vals[i * v:(i + 1) * v], qual[i * q:(i + 1) * q])
                              for i, m in enumerate(np.asarray(meters).tolist())])

    def _write_day_rows(self, rows):
        self.executemany("INSERT INTO day_values (meter_idx, day, vals, quality) VALUES (?,?,?,?) "
                         "ON CONFLICT (day, meter_idx) DO UPDATE SET vals=excluded.vals, "
                         "quality=excluded.quality", rows)

    def import_day(self, day, rows, values):
        """Store whole days of hourly values ([rows, 24]); NaN or negative values are stored as missing.

        Returns how many values were refused. The bulk path of imports and benchmarks.
        """
        values = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0)
        quality = np.where(bad, MISSING, MEASURED).astype(np.uint8)
        with self.transaction():
            self.put_day_rows(day, rows, np.where(bad, np.nan, values), quality)
            self.mark_stale([day])
        return int(bad.sum())

    def stored_days(self):
        """(first, last) day with any stored value, or None."""
        row = self.query("SELECT MIN(day), MAX(day) FROM day_values")[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    # -- late data ----------------------------------------------------------------------
    def mark_stale(self, days):
        self.executemany("INSERT INTO stale_days (day) VALUES (?) ON CONFLICT (day) DO NOTHING",
                         [(int(d),) for d in days])

    def take_stale(self):
        """Return and forget the days whose data changed since the last call."""
        with self.transaction():
            days = sorted(int(r[0]) for r in self.query("SELECT day FROM stale_days"))
            self.execute("DELETE FROM stale_days")
        return days

    # -- batches, registers, events -----------------------------------------------------
    def claim_batch(self, conc, boot, seq, records):
        """Record a batch's dedup key; False if it was stored before (inside the caller's transaction)."""
        return self.execute("INSERT INTO batches VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                            (conc, boot, str(seq), int(time.time()), records)) == 1

    def add_registers(self, readings):
        """Store (meter_id, register, ts, value) readings; a reading stored before is kept as it was."""
        self.executemany("INSERT INTO registers VALUES (?,?,?,?) ON CONFLICT DO NOTHING", readings)

    def register_ranges(self):
        """[(meter_id, register, first ts, last ts)] of every stored register."""
        return self.query("SELECT meter_id, register, MIN(ts), MAX(ts) FROM registers GROUP BY meter_id, register")

    def register_span(self, meter_id, register, t0, t1):
        """[(ts, value)] of one register from the last reading at or before t0 to the first at or after t1."""
        before = self.query("SELECT ts, value FROM registers WHERE meter_id = ? AND register = ? AND ts <= ? "
                            "ORDER BY ts DESC LIMIT 1", (meter_id, register, t0))
        inside = self.query("SELECT ts, value FROM registers WHERE meter_id = ? AND register = ? AND ts > ? "
                            "AND ts < ? ORDER BY ts", (meter_id, register, t0, t1))
        after = self.query("SELECT ts, value FROM registers WHERE meter_id = ? AND register = ? AND ts >= ? "
                           "ORDER BY ts LIMIT 1", (meter_id, register, t1))
        return [(int(t), int(v)) for t, v in before + inside + after]

    def add_events(self, events):
        """Store (meter_id, ts, event name, value) events; repeats are kept once."""
        self.executemany("INSERT INTO events VALUES (?,?,?,?) ON CONFLICT DO NOTHING", events)

    def events_between(self, t0, t1):
        """[(meter_id, ts, event, value)] with t0 <= ts < t1."""
        return [(m, int(t), e, int(v)) for m, t, e, v in self.query(
            "SELECT meter_id, ts, event, value FROM events WHERE ts >= ? AND ts < ? ORDER BY ts", (t0, t1))]

    def add_replacement(self, meter_id, ts, final_old, start_new):
        """The meter was replaced at ``ts``: the old register ended at ``final_old``, the new one starts at ``start_new``."""
        with self.transaction():
            self.execute("INSERT INTO replacements VALUES (?,?,?,?) ON CONFLICT (meter_id, ts) DO UPDATE SET "
                         "final_old=excluded.final_old, start_new=excluded.start_new",
                         (meter_id, ts, final_old, start_new))

    def replacements(self, meter_id):
        return [(int(t), int(a), int(b)) for t, a, b in self.query(
            "SELECT ts, final_old, start_new FROM replacements WHERE meter_id = ? ORDER BY ts", (meter_id,))]

    def add_concentrator_key(self, kid, conc, public_pem):
        """Trust ``public_pem`` for batches of ``conc`` signed under ``kid``; a kid is never reused."""
        if self.query("SELECT 1 FROM concentrator_keys WHERE kid = ?", (kid,)):
            raise ValueError("key id %r is already registered: give a new key a new kid" % kid)
        self.execute("INSERT INTO concentrator_keys (kid, conc, public_pem, added) VALUES (?,?,?,?)",
                     (kid, conc, public_pem, int(time.time())))

    def revoke_concentrator_key(self, kid):
        """Stop trusting ``kid`` from now on; False if no such key is in force."""
        return self.execute("UPDATE concentrator_keys SET revoked = ? WHERE kid = ? AND revoked IS NULL",
                            (int(time.time()), kid)) > 0

    def concentrator_keys(self):
        """[(kid, conc, public_pem, added, revoked or None)], oldest first."""
        return self.query("SELECT kid, conc, public_pem, added, revoked FROM concentrator_keys ORDER BY added, kid")

    def quarantine_log(self, limit=100):
        """[(received, topic, reason, payload size)] of the newest refused batches, newest first."""
        return self.query("SELECT received, topic, reason, LENGTH(payload) FROM quarantine ORDER BY id DESC LIMIT ?",
                          (limit,))

    def quarantine(self, topic, reason, payload):
        self.execute("INSERT INTO quarantine (received, topic, reason, payload) VALUES (?,?,?,?)",
                     (int(time.time()), topic, reason, bytes(payload)))

    def quarantined(self):
        """[(topic, reason)] of refused batches, oldest first."""
        return [(t, r) for t, r in self.query("SELECT topic, reason FROM quarantine ORDER BY id")]

    def count(self, table):
        return int(self.query("SELECT COUNT(*) FROM %s" % table)[0][0])


class SqliteStore(Store):
    """SQLite in WAL mode: readers never wait for the writer; one connection shared under a lock."""

    def __init__(self, path):
        self.url = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode stays consistent after a crash and loses at most the last commit on
        # power loss; an acknowledgement follows our commit, so the agent resends such a batch.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._depth = 0
        super().__init__()

    @contextlib.contextmanager
    def transaction(self):
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("COMMIT")

    def close(self):
        self.conn.close()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3; bulk day rows go in by binary COPY."""

    placeholder = "%s"
    types = {"real": "DOUBLE PRECISION", "blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "clustered": ""}

    def __init__(self, url):
        import psycopg  # only needed for this backend

        self.url = url
        # autocommit: each transaction() is a real BEGIN/COMMIT, not a savepoint in an implicit one
        self.conn = psycopg.connect(url, autocommit=True)
        super().__init__()

    @contextlib.contextmanager
    def transaction(self):
        with self._lock, self.conn.transaction():
            yield self

    def query(self, sql, params=()):
        with self._lock:
            return list(self._execute(sql, params).fetchall())

    def _day_rows(self, sql, params):
        with self._lock:
            cur = self.conn.cursor(binary=True)
            return cur.execute(self._sql(sql), params).fetchall()

    def _write_day_rows(self, rows):
        rows = list(rows)
        with self._lock, self.conn.cursor() as cur:
            days = {r[1] for r in rows}
            if len(days) == 1 and cur.execute("SELECT 1 FROM day_values WHERE day = %s LIMIT 1",
                                              (days.pop(),)).fetchone() is None:
                copy_rows(cur, "day_values", rows)  # a new day: nothing to merge, COPY straight in
                return
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS day_stage (meter_idx INTEGER, day INTEGER, "
                        "vals BYTEA, quality BYTEA) ON COMMIT DELETE ROWS")
            copy_rows(cur, "day_stage", rows)
            cur.execute("INSERT INTO day_values SELECT * FROM day_stage ON CONFLICT (day, meter_idx) "
                        "DO UPDATE SET vals=excluded.vals, quality=excluded.quality")
            cur.execute("TRUNCATE day_stage")

    def close(self):
        self.conn.close()


def copy_rows(cur, table, rows):
    """Binary COPY of (meter_idx, day, vals, quality) rows into ``table``."""
    with cur.copy("COPY %s (meter_idx, day, vals, quality) FROM STDIN (FORMAT BINARY)" % table) as copy:
        copy.set_types(["int4", "int4", "bytea", "bytea"])
        for row in rows:
            copy.write_row(row)
