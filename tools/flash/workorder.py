"""What an installer types or a work order lists, checked before anything touches a module.

A work order is a CSV with one row per meter; rows of one module share its
``device_id``::

    device_id,group_id,resource,serial_number,pulse_constant,initial_reading,initial_reading_again

``device_id`` is the module's network address (4 hex digits, as printed on its
label); ``initial_reading`` is the meter's display in its own unit (kWh, m3,
Gcal), entered twice by the installer and refused if the two differ. An
optional ``key`` column gives the module's AES-128 key (32 hex digits);
without it, the tool makes a fresh random key. Every mistake raises
InstallerError with a sentence the installer can act on.
"""

import csv
import secrets
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from protocol import ids, obis

METERS_MAX = 3  # a D100FC has 3 pulse inputs
REGISTER_MAX = 2**32 - 1  # registers travel as u32 pulse counts (protocol/messages.py)
SERIAL_MAX = 32
COLUMNS = ("device_id", "group_id", "resource", "serial_number", "pulse_constant", "initial_reading",
           "initial_reading_again")
FIRST_ADDR, LAST_ADDR = 0x0001, 0xFFFE  # 0000 is the concentrator, ffff is broadcast


class InstallerError(ValueError):
    """Input an installer must correct; the message says what and how."""


class Meter:
    def __init__(self, channel, resource, serial, pulse_constant, reading, group_id):
        self.channel = channel
        self.resource = resource
        self.serial = serial
        self.pulse_constant = pulse_constant
        self.reading = reading  # Decimal, the display in the meter's unit
        self.group_id = group_id

    def initial_pulses(self):
        """The reading as a pulse count: what the module's total register starts from."""
        return int((self.reading * self.pulse_constant).to_integral_value(ROUND_FLOOR))


class Order:
    """One module to provision: its address, key and meters."""

    def __init__(self, addr, key, meters):
        self.addr = addr
        self.key = key
        self.meters = meters
        self.network = None  # (net id, 16-byte network key) of the mesh it joins: the site's, not the module's

    @property
    def device_id(self):
        return "%04x" % self.addr

    def meter_id(self, meter):
        return ids.meter_id(self.addr, meter.channel)

    def config(self):
        """The module's config.json (firmware/d100fc/module.py reads addr and channels, board.py net_id)."""
        config = {"device_id": self.device_id, "addr": self.addr,
                  "channels": [{"resource": m.resource, "pulse_const": m.pulse_constant,
                                "initial": m.initial_pulses(), "serial": m.serial} for m in self.meters]}
        if self.network is not None:
            config["net_id"] = self.network[0]
        return config


def parse_device_id(text):
    text = (text or "").strip().lower()
    try:
        addr = int(text, 16)
    except ValueError:
        addr = -1
    if len(text) != 4 or not FIRST_ADDR <= addr <= LAST_ADDR:
        raise InstallerError("device id %r: type the 4 hex digits on the module's label, e.g. 002a "
                             "(0000 and ffff are reserved)" % text)
    return addr


def parse_key(text):
    text = (text or "").strip().lower()
    if not text:
        return secrets.token_bytes(16)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise InstallerError("AES key must be 32 hex digits (16 bytes); leave it empty to make a new one")
    return key


def parse_reading(text, what):
    """A meter display like 12345.6 or 12345,6 as a Decimal; no signs, no thousands separators."""
    raw = (text or "").strip()
    if raw.count(",") == 1 and "." not in raw:
        raw = raw.replace(",", ".")  # a decimal comma, as on many meter displays and keyboards
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0 or not raw.replace(".", "").isdigit():
        raise InstallerError("%s: %r is not a meter reading; type the digits on the display, e.g. 12345.6"
                             % (what, text))
    return value


def parse_meter(channel, resource, serial, pulse_constant, reading, reading_again, group_id, where):
    what = "%s, meter %d" % (where, channel + 1)
    resource = (resource or "").strip().lower()
    if resource not in obis.RESOURCES:
        raise InstallerError("%s: resource %r unknown; use one of %s" % (what, resource, ", ".join(obis.RESOURCES)))
    serial = (serial or "").strip()
    if not serial or len(serial) > SERIAL_MAX or not serial.isprintable() or "," in serial:
        raise InstallerError("%s: serial number missing or not as printed on the meter (at most %d characters, "
                             "no commas)" % (what, SERIAL_MAX))
    text = (pulse_constant or "").strip()
    if not text.isdigit() or int(text) == 0:
        raise InstallerError("%s: pulse constant %r must be a whole number of pulses per unit, as printed on "
                             "the meter (e.g. 3200 imp/kWh, 100 imp/m3)" % (what, pulse_constant))
    first = parse_reading(reading, what + " reading")
    second = parse_reading(reading_again, what + " reading (second entry)")
    if first != second:
        raise InstallerError("%s: the two readings differ (%s and %s); read the meter again and enter it twice"
                             % (what, first, second))
    meter = Meter(channel, resource, serial, int(text), first, (group_id or "").strip())
    if not meter.group_id:
        raise InstallerError("%s: balance group missing; the work order names the group (entrance, house) "
                             "this meter belongs to" % what)
    if meter.initial_pulses() > REGISTER_MAX:
        raise InstallerError("%s: reading %s times %d pulses per unit is more than the module counts; check "
                             "the pulse constant" % (what, first, meter.pulse_constant))
    return meter


def order(device_id, meters, key=""):
    """An Order; ``meters``: up to 3 dicts with the work order's columns (group_id included)."""
    addr = parse_device_id(device_id)
    where = "module %04x" % addr
    if not 1 <= len(meters) <= METERS_MAX:
        raise InstallerError("%s: %d meters listed; a module takes 1 to %d" % (where, len(meters), METERS_MAX))
    parsed = [parse_meter(i, m.get("resource"), m.get("serial_number"), m.get("pulse_constant"),
                          m.get("initial_reading"), m.get("initial_reading_again"), m.get("group_id"), where)
              for i, m in enumerate(meters)]
    return Order(addr, parse_key(key), parsed)


def read_rows(path):
    """{device id: [row dict per meter]} of a work-order CSV, in file order.

    Checks what spans rows (the header, a meter listed twice); each module's
    own rows are checked by ``order`` when its turn comes, so one bad module
    does not hold up the others.
    """
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InstallerError("cannot open the work order %s: %s" % (path, e.strerror)) from None
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InstallerError("work order %s lacks the column(s) %s; its first line must be: %s"
                                 % (path, ", ".join(missing), ",".join(COLUMNS)))
        rows = {}
        seen = {}
        for row in reader:
            meter = ((row.get("resource") or "").strip().lower(), (row.get("serial_number") or "").strip())
            if meter in seen:
                raise InstallerError("work order line %d: meter %s (%s) is already on line %d"
                                     % (reader.line_num, meter[1], meter[0], seen[meter]))
            seen[meter] = reader.line_num
            rows.setdefault((row.get("device_id") or "").strip().lower(), []).append(row)
    if not rows:
        raise InstallerError("work order %s lists no meters" % path)
    return rows
