"""BALANS wire formats: one source of truth for every part.

Radio frames and application messages (``frame``, ``messages``, ``ccm``) run
unchanged on MicroPython and CPython. Signed batches (``batch``) are CPython
only: they travel from the edge agent to central over MQTT.

Every decoder raises ``protocol.errors.ProtocolError`` (or a subclass) for any
bad input, and nothing else.
"""
