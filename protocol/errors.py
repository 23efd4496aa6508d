"""The one error type every BALANS decoder raises."""


class ProtocolError(ValueError):
    """Input is not a valid frame, message or batch.

    Subclasses say why when the caller must react differently:
    ``AuthError`` (tag or signature wrong) and ``ReplayError`` (a counter or
    sequence already seen or too old). Everything else, such as truncation,
    an unknown type or a field out of range, is a plain ``ProtocolError``.
    """


class AuthError(ProtocolError):
    """Authentication failed: a forged, corrupted or wrongly keyed frame or batch."""


class ReplayError(ProtocolError):
    """The frame counter was seen before or is older than the replay window."""
