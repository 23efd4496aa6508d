"""Channel set-up and configuration blobs: validating them, persisting them, assembling them from chunks.

A channel is (resource, pulse constant, debounce ms, contract pulses per hour).
The factory set-up comes in the Module's config dict; later ones arrive as a
CONFIG_CHUNK blob of kind KIND_CHANNELS (layout in docs/firmware.md).
"""

import struct

from firmware.d100fc.errors import E_FORMAT, E_PULSE_CONST, E_RESOURCE, ConfigError
from protocol.compat import const

KIND_CALENDAR = const(1)
KIND_CHANNELS = const(2)
BLOB_MAX = const(1024)  # the largest blob accepted: a calendar with many special days fits
CHANNELS = const(3)
CHANNELS_VERSION = const(1)
CHANNEL = "<BIHI"  # resource code, pulse constant, debounce ms, contract pulses per hour
CHANNEL_SIZE = const(11)
DEFAULT_DEBOUNCE_MS = const(20)  # reed contacts bounce for a few ms; S0 pulses last >= 30 ms
RESOURCE_CODES = ("electricity", "heat", "gas", "water")  # protocol.obis.RESOURCES order; wire code = index + 1


def channel(resource, pulse_const, debounce_ms=DEFAULT_DEBOUNCE_MS, contract=0):
    """A validated channel tuple; raises ConfigError."""
    if resource not in RESOURCE_CODES:
        raise ConfigError(E_RESOURCE, "unknown resource %r" % (resource,))
    if not isinstance(pulse_const, int) or pulse_const <= 0:
        raise ConfigError(E_PULSE_CONST, "pulse constant %r" % (pulse_const,))
    if not 0 <= debounce_ms <= 0xFFFF or contract < 0:
        raise ConfigError(E_FORMAT, "debounce %r or contract %r" % (debounce_ms, contract))
    return (resource, pulse_const, debounce_ms, contract)


def channels_from_config(entries):
    """Channel tuples and initial readings from the config dict's "channels" list."""
    if not 1 <= len(entries) <= CHANNELS:
        raise ConfigError(E_RESOURCE, "1 to %d channels, not %d" % (CHANNELS, len(entries)))
    chans = []
    initial = []
    for e in entries:
        chans.append(channel(e["resource"], e["pulse_const"], e.get("debounce_ms", DEFAULT_DEBOUNCE_MS),
                             e.get("contract", 0)))
        initial.append(e.get("initial", 0))
    return chans, initial


def encode_channels(chans):
    out = bytes([CHANNELS_VERSION, len(chans)])
    for resource, pulse_const, debounce_ms, contract in chans:
        out += struct.pack(CHANNEL, RESOURCE_CODES.index(resource) + 1, pulse_const, debounce_ms, contract)
    return out


def decode_channels(blob):
    """Channel tuples from a KIND_CHANNELS blob; raises ConfigError."""
    if len(blob) < 2 or blob[0] != CHANNELS_VERSION or not 1 <= blob[1] <= CHANNELS \
            or len(blob) != 2 + blob[1] * CHANNEL_SIZE:
        raise ConfigError(E_FORMAT, "not a channel set-up blob")
    chans = []
    for i in range(blob[1]):
        code, pulse_const, debounce_ms, contract = struct.unpack_from(CHANNEL, blob, 2 + i * CHANNEL_SIZE)
        if not 1 <= code <= len(RESOURCE_CODES):
            raise ConfigError(E_RESOURCE, "resource code %d" % code)
        chans.append(channel(RESOURCE_CODES[code - 1], pulse_const, debounce_ms, contract))
    return chans


class BlobAssembler:
    """Puts the CONFIG_CHUNK pieces of one blob together; pieces may come in any order or twice.

    The buffer is sized by the blob's announced total when its first piece arrives.
    """

    def __init__(self):
        self._key = None

    def feed(self, chunk):
        """Add one ConfigChunk; return (kind, blob) when it completes one, else None. Raises ConfigError."""
        if chunk.total > BLOB_MAX or chunk.total == 0:
            raise ConfigError(E_FORMAT, "blob of %d bytes" % chunk.total)
        key = (chunk.kind, chunk.blob_id, chunk.total)
        if key != self._key:
            self._key = key
            self._missing = chunk.total
            self._buf = bytearray(chunk.total)
            self._have = bytearray((chunk.total + 7) // 8)  # one bit per byte received
        for i in range(len(chunk.data)):
            at = chunk.offset + i
            bit = 1 << (at & 7)
            if not self._have[at >> 3] & bit:
                self._have[at >> 3] |= bit
                self._missing -= 1
            self._buf[at] = chunk.data[i]
        if self._missing:
            return None
        self._key = None
        return chunk.kind, bytes(self._buf)
