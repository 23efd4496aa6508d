"""Ed25519 signature verification (RFC 8032 section 5.1.7) in pure Python.

Written for MicroPython's arbitrary-precision ints, so a module checks the
vendor's signature itself and trusts neither the mesh nor the concentrator.
Verification handles only public data, so constant time is not needed.
Points are in extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z,
y = Y/Z, x*y = T/Z (Hisil et al. 2008), which avoids an inversion per step.
"""

from firmware.common.ota.sha512 import sha512

_P = 2**255 - 19  # the field prime
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_D = -121665 * pow(121666, _P - 2, _P) % _P  # curve constant d = -121665/121666
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)  # a square root of -1

# The base point B: y = 4/5, x the even root (RFC 8032 section 5.1)
_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_B = (_BX, _BY, 1, _BX * _BY % _P)
_IDENTITY = (0, 1, 1, 0)

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64


def _add(p, q):
    # add-2008-hwcd-3 for a = -1
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p):
    # dbl-2008-hwcd for a = -1
    x1, y1, z1, _ = p
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s):
    """The point encoded in 32 bytes ``s``, or None if it is not a canonical curve point."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx == (_P - u) % _P:
        x = x * _SQRT_M1 % _P
    elif vxx != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _negate(p):
    x, y, z, t = p
    return (_P - x, y, z, _P - t)


def verify(public_key, message, signature):
    """True if ``signature`` is the holder of ``public_key``'s Ed25519 signature of ``message``.

    Checks encode([S]B - [k]A) == R, as OpenSSL and RFC 8032 do, with one
    joint double-and-add over both scalars (Straus-Shamir).
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    a = _decode(public_key)
    if a is None:
        return False
    r = bytes(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if s >= _L or _decode(r) is None:
        return False
    k = int.from_bytes(sha512(r + bytes(public_key) + bytes(message)), "little") % _L
    minus_a = _negate(a)
    both = _add(_B, minus_a)
    acc = _IDENTITY
    for i in range(255, -1, -1):
        acc = _double(acc)
        bit_s, bit_k = (s >> i) & 1, (k >> i) & 1
        if bit_s and bit_k:
            acc = _add(acc, both)
        elif bit_s:
            acc = _add(acc, _B)
        elif bit_k:
            acc = _add(acc, minus_a)
    return _encode(acc) == r
