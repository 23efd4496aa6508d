"""OBIS-style register codes (IEC 62056-61): which quantity a register value is.

A code is ``A-0:C.D.E``: A the medium, C.D the quantity, E the tariff, with
0 the total, 1..4 the time-of-use tariffs and 9 the penalty register (energy
used in an hour above the contracted power). Values travel as integer pulse
counts; central multiplies by the meter's pulse constant.
"""

from protocol.compat import const

PENALTY = const(9)
TARIFFS = (0, 1, 2, 3, 4, PENALTY)  # every tariff a register code may name

# resource -> (A, C.D): electricity active import, heat energy, gas volume, water volume
_QUANTITY = {
    "electricity": ("1", "1.8"),
    "heat": ("6", "1.0"),
    "gas": ("7", "3.0"),
    "water": ("8", "1.0"),
}
# In a fixed order (wire codes index it): MicroPython's dicts do not keep insertion order.
RESOURCES = ("electricity", "heat", "gas", "water")
_BY_PREFIX = {"%s-0:%s" % q: r for r, q in _QUANTITY.items()}


def code(resource, tariff=0):
    """Register code of ``resource`` for ``tariff`` (0 total, 1..4, or PENALTY)."""
    if resource not in _QUANTITY:
        raise ValueError("unknown resource %r" % resource)
    if tariff not in TARIFFS:
        raise ValueError("tariff %r is not 0..4 or %d" % (tariff, PENALTY))
    a, cd = _QUANTITY[resource]
    return "%s-0:%s.%d" % (a, cd, tariff)


def parse(text):
    """Return (resource, tariff) of a register code, or raise ValueError."""
    prefix, _, tariff = text.rpartition(".")
    resource = _BY_PREFIX.get(prefix)
    if resource is None or not tariff.isdigit():
        raise ValueError("not a BALANS register code: %r" % text)
    t = int(tariff)
    if t not in TARIFFS:
        raise ValueError("tariff %d in %r" % (t, text))
    return resource, t
