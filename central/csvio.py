"""The four CSV imports (groups, meters, readings, events), each line checked on its own.

Every reader returns (good items, [LineError]): a bad line is reported with its line
number (the header is line 1) and reason, and never costs its neighbours their place.
A file that cannot be read at all (missing, no header, a required column absent)
raises ImportFailed.
"""

import csv
import math
from datetime import datetime, timezone

import numpy as np

from central.errors import ImportFailed, LineError
from central.model import group_from_row, meter_from_row
from protocol import messages

GROUP_COLUMNS = ("group_id", "parent_id", "level", "resource", "input_meter_id", "loss_pct")
METER_COLUMNS = ("meter_id", "group_id", "resource")
READING_COLUMNS = ("meter_id", "hour_start", "value")
EVENT_COLUMNS = ("meter_id", "ts", "event")

# Event names in events.csv and in the store; batches carry the EV_* codes of protocol.messages.
EVENT_NAMES = {
    messages.EV_MAGNET_START: "magnet", messages.EV_MAGNET_END: "magnet_end",
    messages.EV_COVER_OPEN: "cover_open", messages.EV_COVER_CLOSED: "cover_closed",
    messages.EV_BATTERY_LOW: "battery_low", messages.EV_POWER_RESTART: "power_restart",
    messages.EV_CLOCK_SET: "clock_set", messages.EV_LIMIT_EXCEEDED: "limit_exceeded",
    messages.EV_RELAY_SWITCHED: "relay_switched", messages.EV_CONFIG_REFUSED: "config_refused",
    messages.EV_LEAK: "leak", messages.EV_FW_UPDATED: "fw_updated",
    messages.EV_BROADCAST_REFUSED: "broadcast_refused", messages.EV_CLOCK_LIMITED: "clock_limited",
}
# "tamper" comes from other head-end systems' exports; our modules report magnet and cover.
KNOWN_EVENTS = frozenset(EVENT_NAMES.values()) | {"tamper"}


def _rows(path, required):
    """Yield (line number, row dict) of a CSV file whose header holds every ``required`` column."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise ImportFailed([LineError(str(path), 0, "cannot open: %s" % e.strerror)]) from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ImportFailed([LineError(str(path), 1, "header lacks column(s) %s" % ", ".join(missing))])
        try:
            for row in reader:
                if None in row:
                    row["__extra__"] = row.pop(None)
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as e:
            raise ImportFailed([LineError(str(path), reader.line_num, "unreadable: %s" % e)]) from None


def _check_width(row):
    if "__extra__" in row:
        raise ValueError("more fields than the header names")
    if any(v is None for v in row.values()):
        raise ValueError("fewer fields than the header names")


def _read_items(path, required, parse):
    items, errors, seen = [], [], {}
    for line, row in _rows(path, required):
        try:
            _check_width(row)
            item = parse(row)
        except ValueError as e:
            errors.append(LineError(str(path), line, str(e)))
            continue
        if item.id in seen:
            errors.append(LineError(str(path), line, "duplicate id %r (first on line %d)" % (item.id, seen[item.id])))
            continue
        seen[item.id] = line
        items.append((line, item))
    return items, errors


def import_model(model, groups_path=None, meters_path=None):
    """Add the groups and meters of the two files to ``model``; return the [LineError] list.

    A group or meter whose reference is broken (unknown parent, group or input meter,
    a loop, a resource mismatch) is reported on its own line and left out.
    """
    errors, lines = [], {}
    for kind, path, columns, parse, table in (("group", groups_path, GROUP_COLUMNS, group_from_row, model.groups),
                                              ("meter", meters_path, METER_COLUMNS, meter_from_row, model.meters)):
        if not path:
            continue
        items, errs = _read_items(path, columns, parse)
        errors += errs
        for line, item in items:
            table[item.id] = item
            lines[(kind, item.id)] = (str(path), line)
    for kind, ident, reason in model.drop_broken():
        source, line = lines.get((kind, ident), ("model", 0))
        errors.append(LineError(source, line, reason))
    return sorted(errors, key=lambda e: (e.source, e.line))


def parse_hour(text):
    """Unix hour number of an ISO 8601 UTC hour start such as ``2026-01-20T13:00:00Z``."""
    ts = parse_time(text)
    if ts % 3600:
        raise ValueError("%r is not the start of an hour" % text)
    return ts // 3600


def parse_time(text):
    """Unix seconds of an ISO 8601 time with a zone (Z or an offset); naive times are refused."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("%r is not an ISO 8601 time" % text) from None
    if t.tzinfo is None:
        raise ValueError("%r has no time zone (write it in UTC with Z)" % text)
    return int(t.astimezone(timezone.utc).timestamp())


def parse_value(text):
    try:
        v = float(text)
    except ValueError:
        raise ValueError("value %r is not a number" % text) from None
    if not math.isfinite(v) or v < 0:
        raise ValueError("value %r must be a finite, non-negative consumption" % text)
    return v


def read_readings(path, meter_index):
    """Hourly consumption of known meters: (meter rows, unix hours, values) arrays and errors.

    ``meter_index`` maps meter ids to rows. A second value for the same meter and hour
    is refused (the first stays): a file contradicting itself is the sender's to fix.
    """
    rows, hours, values, errors = [], [], [], []
    hour_cache, seen = {}, {}
    for line, row in _rows(path, READING_COLUMNS):
        try:
            _check_width(row)
            mid = row["meter_id"].strip()
            idx = meter_index.get(mid)
            if idx is None:
                raise ValueError("unknown meter %r (import it in meters.csv first)" % mid)
            text = row["hour_start"]
            hour = hour_cache.get(text)
            if hour is None:
                hour = hour_cache[text] = parse_hour(text)
            value = parse_value(row["value"])
            first = seen.setdefault((idx, hour), line)
            if first != line:
                raise ValueError("second value for %s at %s (first on line %d)" % (mid, text.strip(), first))
        except ValueError as e:
            errors.append(LineError(str(path), line, str(e)))
            continue
        rows.append(idx)
        hours.append(hour)
        values.append(value)
    return (np.array(rows, dtype=np.int64), np.array(hours, dtype=np.int64),
            np.array(values, dtype=np.float64)), errors


def read_events(path, meters):
    """Events of known meters as [(meter_id, unix seconds, name, value)] and errors."""
    events, errors = [], []
    for line, row in _rows(path, EVENT_COLUMNS):
        try:
            _check_width(row)
            mid = row["meter_id"].strip()
            if mid not in meters:
                raise ValueError("unknown meter %r" % mid)
            name = row["event"].strip().lower()
            if name not in KNOWN_EVENTS:
                raise ValueError("event %r is not one of %s" % (name, ", ".join(sorted(KNOWN_EVENTS))))
            events.append((mid, parse_time(row["ts"]), name, 0))
        except ValueError as e:
            errors.append(LineError(str(path), line, str(e)))
    return events, errors
