"""The one error a refused configuration raises, and its codes.

A refused calendar or channel set-up changes nothing: the module keeps the one
in force and tells the sender ``code`` in the ACK's detail byte (status
ST_REFUSED) and in an EV_CONFIG_REFUSED event.
"""

from protocol.compat import const

E_FORMAT = const(1)  # wrong magic, version, length or blob kind
E_TARIFF = const(2)  # a tariff outside 1..4
E_OVERLAP = const(3)  # times, seasons or special days not strictly increasing, or a duplicate id
E_REFERENCE = const(4)  # a week or day profile that is not defined
E_RANGE = const(5)  # a month, day, minute, offset or rule out of range
E_PULSE_CONST = const(6)  # pulse constant zero
E_RESOURCE = const(7)  # unknown resource or channel


class ConfigError(ValueError):
    def __init__(self, code, why):
        super().__init__(why)
        self.code = code
