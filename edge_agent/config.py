"""The agent's configuration: a TOML file (see agent.example.toml), checked field by field.

``load(path)`` or ``from_dict(d)`` returns a Config; anything wrong raises
ConfigError naming the section, the key and what was expected, so an operator
can fix the file from the message alone.
"""

import json
import os
import tomllib


class ConfigError(ValueError):
    """The configuration is missing something or has a value of the wrong kind."""


# section -> key -> (type, default); a default of REQUIRED must be given
REQUIRED = object()
SCHEMA = {
    "concentrator": {
        "site": (str, REQUIRED),  # topic level: balans/v1/<site>/<conc>/...
        "id": (str, REQUIRED),  # the concentrator id in batches and topics
        "link": (str, ""),  # pyserial port or URL (/dev/ttyS1, socket://host:port, loop://); "" = given in code
        "baud": (int, 115200),
    },
    "queue": {
        "dir": (str, REQUIRED),
        "max_bytes": (int, 256 << 20),  # a quarter of a 1 GB data partition
        "segment_bytes": (int, 4 << 20),  # small enough to rewrite when thinning, big enough to be few
        "batch_records": (int, 5000),  # readings per batch: ~120 KB of CBOR, well under MQTT limits
        "flush_s": (float, 1.0),  # group commit window: at most this long between link data and fsync
    },
    "signing": {
        "key_file": (str, REQUIRED),  # PEM Ed25519 private key
        "kid": (str, REQUIRED),  # key id central knows the public key by; a new kid rotates the key
    },
    "central": {
        "keys": (dict, REQUIRED),  # kid -> PEM public key file: acknowledgements and commands
    },
    "mqtt": {
        "host": (str, "127.0.0.1"),
        "port": (int, 1883),
        "client_id": (str, ""),  # default: balans-agent-<site>-<conc>
        "username": (str, ""),
        "password_file": (str, ""),
        "tls": (bool, False),
        "ca_file": (str, ""),
        "cert_file": (str, ""),  # client certificate authentication
        "key_file": (str, ""),
        "keepalive_s": (int, 60),
        "max_inflight": (int, 8),  # batches awaiting central's ack; the research note's K <= 4..8
        "ack_timeout_s": (float, 60.0),  # re-send a batch not acknowledged this long
        "reconnect_min_s": (int, 1),
        "reconnect_max_s": (int, 120),
    },
    "status": {
        "interval_s": (float, 60.0),
        "silent_hours": (int, 3),  # a module not heard from this long is listed as silent
        "battery_low_v": (float, 3.3),  # ER18505 cells sag below this near end of life
    },
    "commands": {
        "max_ttl_s": (int, 7 * 86400),  # a command valid longer than this is refused
    },
    "ota": {
        "vendor_key": (str, ""),  # the vendor's 32-byte update key (vendor.pub); "" refuses every update
    },
}


class Section:
    def __init__(self, values):
        self.__dict__.update(values)

    def __repr__(self):
        return "Section(%r)" % self.__dict__


class Config:
    def __init__(self, sections):
        for name, values in sections.items():
            setattr(self, name, Section(values))


def _check(section, key, value, kind):
    where = "[%s] %s" % (section, key)
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:
        raise ConfigError("%s must be %s, not %r" % (where, kind.__name__, value))
    if kind is int and value < 0:
        raise ConfigError("%s must not be negative" % where)
    return value


def from_dict(data):
    """Validate a dict shaped like the TOML file; return a Config."""
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a table")
    unknown = set(data) - set(SCHEMA)
    if unknown:
        raise ConfigError("unknown section(s) %s; known: %s" % (sorted(unknown), sorted(SCHEMA)))
    sections = {}
    for section, fields in SCHEMA.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError("[%s] must be a table" % section)
        extra = set(given) - set(fields)
        if extra:
            raise ConfigError("[%s] has unknown key(s) %s; known: %s" % (section, sorted(extra), sorted(fields)))
        values = {}
        for key, (kind, default) in fields.items():
            if key in given:
                values[key] = _check(section, key, given[key], kind)
            elif default is REQUIRED:
                raise ConfigError("[%s] %s is required" % (section, key))
            else:
                values[key] = default
        sections[section] = values
    _check_meaning(sections)
    return Config(sections)


def _check_meaning(s):
    if not s["central"]["keys"]:
        raise ConfigError("[central] keys must name at least one kid = \"public key file\"")
    for kid, path in s["central"]["keys"].items():
        if not isinstance(path, str):
            raise ConfigError("[central] keys.%s must be a file name" % kid)
    for section, key in (("concentrator", "site"), ("concentrator", "id")):
        v = s[section][key]
        if not v or any(c in v for c in "/+#") or len(v) > 64:
            raise ConfigError("[%s] %s must be 1..64 characters without / + #" % (section, key))
    q = s["queue"]
    if q["max_bytes"] < 2 * q["segment_bytes"]:
        raise ConfigError("[queue] max_bytes must be at least twice segment_bytes")
    if not 1 <= q["batch_records"] <= 20000:
        raise ConfigError("[queue] batch_records must be 1..20000 (protocol.batch.MAX_RECORDS)")
    m = s["mqtt"]
    if not 1 <= m["port"] <= 65535:
        raise ConfigError("[mqtt] port must be 1..65535")
    if m["max_inflight"] < 1:
        raise ConfigError("[mqtt] max_inflight must be at least 1")
    if bool(m["cert_file"]) != bool(m["key_file"]):
        raise ConfigError("[mqtt] cert_file and key_file go together")
    if not m["client_id"]:
        m["client_id"] = "balans-agent-%s-%s" % (s["concentrator"]["site"], s["concentrator"]["id"])


def to_toml(data):
    """TOML text of a dict shaped like the config file (tables of scalars and one inline table level)."""
    lines = []
    for section, values in data.items():
        lines.append("[%s]" % section)
        for key, value in values.items():
            if isinstance(value, dict):
                value = "{ %s }" % ", ".join('"%s" = %s' % (k, json.dumps(v)) for k, v in value.items())
            else:
                value = json.dumps(value)
            lines.append("%s = %s" % (key, value))
    return "\n".join(lines) + "\n"


def load(path):
    """Read and validate a TOML file; ConfigError says what is wrong and where."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("no configuration file at %s" % path) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s is not valid TOML: %s" % (path, e)) from None
    config = from_dict(data)
    base = os.path.dirname(os.path.abspath(path))
    # relative file names are relative to the configuration file
    for section, key in (("queue", "dir"), ("signing", "key_file"), ("mqtt", "password_file"),
                         ("mqtt", "ca_file"), ("mqtt", "cert_file"), ("mqtt", "key_file"), ("ota", "vendor_key")):
        sec = getattr(config, section)
        v = getattr(sec, key)
        if v and not os.path.isabs(v):
            setattr(sec, key, os.path.join(base, v))
    config.central.keys = {k: v if os.path.isabs(v) else os.path.join(base, v) for k, v in config.central.keys.items()}
    return config

