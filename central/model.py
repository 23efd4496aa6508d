"""Metering points and balance groups: one model for every level, entrance to region.

A balance group has input meter(s) (what enters it) and members: meters, and
sub-groups through their input meters. A meter names the group it is a member of;
so an entrance's input meter is a member of its house. A group without an input
meter passes its members up to its parent, so the parent's balance stays whole.

Meters carry their pulse constant (pulses per kWh or m³), the modulus at which
the register rolls over, and their replacement history (the register restarts).
"""

from protocol import obis

LEVELS = ("entrance", "house", "street", "district", "city", "region")
LOSS_MODELS = ("fixed", "quadratic")

# Default technical losses in % of the input when groups.csv leaves loss_pct empty:
# UK LV networks lose about 4 % of LV energy over all levels (Poursharif et al., IET
# GTD 2018), so one level takes about half of it; pipes inside a house lose little.
DEFAULT_LOSS_PCT = {"electricity": 2.0, "heat": 3.0, "gas": 0.5, "water": 1.0}

# A group's status turns to "alarm" when its imbalance exceeds this share of its input.
DEFAULT_THRESHOLD_PCT = {"electricity": 5.0, "heat": 8.0, "gas": 3.0, "water": 8.0}

# Each electricity meter draws up to 2 W from the line before the members' meters
# (IEC 62053-21 voltage-circuit limit); pulse water and gas meters draw nothing.
METER_OWN_W = {"electricity": 2.0, "heat": 0.0, "gas": 0.0, "water": 0.0}

# Pulses per unit when meters.csv does not say: 1000 imp/kWh is the usual LED rate of
# electricity meters; water and gas reed outputs give 1 pulse per 10 L = 100 per m³.
DEFAULT_PULSE_CONSTANT = {"electricity": 1000.0, "heat": 1000.0, "gas": 100.0, "water": 100.0}


class Group:
    """One balance group. ``inputs``: its input meter ids; ``parent``: None at the top."""

    def __init__(self, group_id, parent, level, resource, inputs=(), loss_pct=None,
                 loss_model="fixed", equipment_w=None, threshold_pct=None):
        self.id = group_id
        self.parent = parent or None
        self.level = level
        self.resource = resource
        self.inputs = tuple(inputs)
        self.loss_pct = DEFAULT_LOSS_PCT[resource] if loss_pct is None else float(loss_pct)
        self.loss_model = loss_model
        self.equipment_w = None if equipment_w is None else float(equipment_w)
        self.threshold_pct = DEFAULT_THRESHOLD_PCT[resource] if threshold_pct is None else float(threshold_pct)

    def __repr__(self):
        return "Group(%r, parent=%r, %s, %s)" % (self.id, self.parent, self.level, self.resource)


class Meter:
    """One metering point: member of ``group`` (None for a top-level input meter)."""

    def __init__(self, meter_id, group, resource, pulse_constant=None, rollover=None):
        self.id = meter_id
        self.group = group or None
        self.resource = resource
        self.pulse_constant = DEFAULT_PULSE_CONSTANT[resource] if pulse_constant is None else float(pulse_constant)
        self.rollover = None if rollover is None else int(rollover)

    def __repr__(self):
        return "Meter(%r, group=%r, %s)" % (self.id, self.group, self.resource)


def check_group(g):
    """Raise ValueError if one group's own fields are wrong (references are checked by Model)."""
    if not g.id:
        raise ValueError("empty group_id")
    if g.level not in LEVELS:
        raise ValueError("level %r is not one of %s" % (g.level, ", ".join(LEVELS)))
    if g.resource not in obis.RESOURCES:
        raise ValueError("resource %r is not one of %s" % (g.resource, ", ".join(obis.RESOURCES)))
    if g.loss_model not in LOSS_MODELS:
        raise ValueError("loss_model %r is not one of %s" % (g.loss_model, ", ".join(LOSS_MODELS)))
    if not 0 <= g.loss_pct < 100:
        raise ValueError("loss_pct %r is not in 0..100" % g.loss_pct)
    if g.equipment_w is not None and g.equipment_w < 0:
        raise ValueError("equipment_w %r is negative" % g.equipment_w)
    if not g.threshold_pct > 0:
        raise ValueError("threshold_pct %r must be positive" % g.threshold_pct)


def check_meter(m):
    if not m.id:
        raise ValueError("empty meter_id")
    if m.resource not in obis.RESOURCES:
        raise ValueError("resource %r is not one of %s" % (m.resource, ", ".join(obis.RESOURCES)))
    if not m.pulse_constant > 0:
        raise ValueError("pulse_constant %r must be positive" % m.pulse_constant)
    if m.rollover is not None and m.rollover <= 0:
        raise ValueError("rollover %r must be positive" % m.rollover)


class Model:
    """Groups and meters, their references checked. Meters keep a stable order (their index)."""

    def __init__(self):
        self.groups = {}
        self.meters = {}

    def add_group(self, g):
        check_group(g)
        self.groups[g.id] = g

    def add_meter(self, m):
        check_meter(m)
        self.meters[m.id] = m

    def problems(self):
        """Yield (kind, id, reason) for each broken reference; the model stays usable without them."""
        for g in self.groups.values():
            if g.parent is not None and g.parent not in self.groups:
                yield "group", g.id, "parent %r is not a known group" % g.parent
            for mid in g.inputs:
                m = self.meters.get(mid)
                if m is None:
                    yield "group", g.id, "input meter %r is not a known meter" % mid
                elif m.resource != g.resource:
                    yield "group", g.id, "input meter %r measures %s, not %s" % (mid, m.resource, g.resource)
        for g in self.groups.values():
            seen = {g.id}
            p = g.parent
            while p is not None and p in self.groups:
                if p in seen:
                    yield "group", g.id, "parent chain loops through %r" % p
                    break
                seen.add(p)
                p = self.groups[p].parent
        for m in self.meters.values():
            if m.group is None:
                continue
            g = self.groups.get(m.group)
            if g is None:
                yield "meter", m.id, "group %r is not a known group" % m.group
            elif g.resource != m.resource:
                yield "meter", m.id, "measures %s but group %r balances %s" % (m.resource, g.id, g.resource)

    def drop_broken(self):
        """Remove groups and meters with broken references; return the problems found.

        Dropping a group can break others that point at it, so repeat until clean.
        """
        found = []
        while True:
            problems = list(self.problems())
            if not problems:
                return found
            found.extend(problems)
            for kind, ident, _ in problems:
                (self.groups if kind == "group" else self.meters).pop(ident, None)

    def children(self):
        """group id -> list of sub-group ids."""
        out = {gid: [] for gid in self.groups}
        for g in self.groups.values():
            if g.parent in out:
                out[g.parent].append(g.id)
        return out

    def meter_index(self):
        """meter id -> row index in every value matrix (the model's meter order)."""
        return {mid: i for i, mid in enumerate(self.meters)}


def from_lists(groups, meters):
    """A Model from Python lists: groups as dicts with groups.csv's keys, meters with meters.csv's.

    Raises ValueError naming the first bad item; use ``central.csvio`` for per-line reports.
    """
    model = Model()
    for row in groups:
        model.add_group(group_from_row(row))
    for row in meters:
        model.add_meter(meter_from_row(row))
    problems = list(model.problems())
    if problems:
        raise ValueError("%s %s: %s" % problems[0])
    return model


def _optional_float(row, key):
    text = str(row.get(key) or "").strip()
    return float(text) if text else None


def _resource(row):
    resource = str(row.get("resource") or "").strip()
    if resource not in obis.RESOURCES:
        raise ValueError("resource %r is not one of %s" % (resource, ", ".join(obis.RESOURCES)))
    return resource


def group_from_row(row):
    """A Group from one groups.csv row (a dict of text); raises ValueError with the reason."""
    inputs = [m.strip() for m in str(row.get("input_meter_id") or "").split(";") if m.strip()]
    g = Group(str(row.get("group_id") or "").strip(), str(row.get("parent_id") or "").strip(),
              str(row.get("level") or "").strip(), _resource(row), inputs,
              loss_pct=_optional_float(row, "loss_pct"),
              loss_model=str(row.get("loss_model") or "fixed").strip(),
              equipment_w=_optional_float(row, "equipment_w"),
              threshold_pct=_optional_float(row, "threshold_pct"))
    check_group(g)
    return g


def meter_from_row(row):
    """A Meter from one meters.csv row (a dict of text); raises ValueError with the reason."""
    resource = _resource(row)
    rollover = _optional_float(row, "rollover")
    if rollover is not None and rollover != int(rollover):
        raise ValueError("rollover %r is not a whole number of pulses" % rollover)
    m = Meter(str(row.get("meter_id") or "").strip(), str(row.get("group_id") or "").strip(), resource,
              pulse_constant=_optional_float(row, "pulse_constant"),
              rollover=None if rollover is None else int(rollover))
    check_meter(m)
    return m
