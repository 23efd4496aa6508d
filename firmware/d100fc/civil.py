"""Calendar dates from day numbers and back, in integers (proleptic Gregorian).

The firmware cannot rely on ``time.localtime`` (boards keep UTC and no zone
database), so the time-of-use calendar does its date arithmetic here.
Day 0 is 1970-01-01, a Thursday; weekdays count 0 = Monday .. 6 = Sunday.
"""

from protocol.compat import const

DAY = const(86400)
THURSDAY = const(3)


def days_from_civil(y, m, d):
    """Day number of year ``y``, month ``m`` (1..12), day ``d``."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (9 if m <= 2 else -3)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of day number ``z``."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d


def weekday(z):
    return (z + THURSDAY) % 7


def month_length(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def nth_weekday(y, m, week, wday):
    """Day number of the ``week``-th (1..4, 5 = last) ``wday`` of month ``m`` in year ``y``."""
    first = days_from_civil(y, m, 1)
    z = first + (wday - weekday(first)) % 7
    if week == 5:
        last = first + month_length(y, m) - 1
        while z + 7 <= last:
            z += 7
        return z
    return z + 7 * (week - 1)
