"""How a meter is named on the wire until provisioning gives it a name of its own.

A module has a 16-bit network address; each of its 3 channels is one meter.
Central maps these ids to the utility's meter numbers (tools/flash writes that map).
"""


def meter_id(addr, channel):
    """``"002a.1"``: module address in 4 hex digits, then the channel 0..2."""
    return "%04x.%d" % (addr, channel)


def parse_meter_id(text):
    """Return (addr, channel) of a wire meter id, or raise ValueError."""
    addr, _, channel = text.partition(".")
    if len(addr) != 4 or len(channel) != 1 or channel not in "012":
        raise ValueError("not a wire meter id: %r" % text)
    return int(addr, 16), int(channel)
