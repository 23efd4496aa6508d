"""The time-of-use calendar: local time with daylight saving, seasons, special days, refusals."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from firmware.d100fc import civil
from firmware.d100fc.calendar import Calendar
from firmware.d100fc.calendar_blob import encode
from firmware.d100fc.errors import E_RANGE, ConfigError
from tests.d100fc_scenario import two_tariff_calendar

# EU 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC
EU_START = 1774746000
EU_END = 1792890000


def utc(y, mo, d, h=0, mi=0):
    return civil.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60


def test_civil_dates_round_trip_and_weekdays():
    assert civil.days_from_civil(1970, 1, 1) == 0
    assert civil.weekday(civil.days_from_civil(2026, 6, 1)) == 0  # a Monday
    for z in range(-800, 80000, 37):
        assert civil.days_from_civil(*civil.civil_from_days(z)) == z


def test_eu_daylight_saving_transitions():
    cal = Calendar(two_tariff_calendar())
    assert (utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)) == (EU_START, EU_END)
    assert cal.offset_at(EU_START - 1) == 3600 and cal.offset_at(EU_START) == 7200
    assert cal.offset_at(EU_END - 1) == 7200 and cal.offset_at(EU_END) == 3600
    assert cal.next_change(EU_START - 600) == EU_START


def test_tariff_follows_local_time_across_daylight_saving():
    cal = Calendar(two_tariff_calendar())
    # day tariff from 07:00 local: 06:00 UTC in winter, 05:00 UTC in summer (weekdays)
    assert cal.tariff_at(utc(2026, 1, 13, 5, 59)) == 2 and cal.tariff_at(utc(2026, 1, 13, 6)) == 1
    assert cal.tariff_at(utc(2026, 7, 14, 4, 59)) == 2 and cal.tariff_at(utc(2026, 7, 14, 5)) == 1
    assert cal.next_change(utc(2026, 7, 14, 3)) == utc(2026, 7, 14, 5)


def test_sundays_and_special_days_use_their_day_profile():
    cal = Calendar(two_tariff_calendar())
    assert cal.tariff_at(utc(2026, 6, 7, 12)) == 2  # a Sunday: night tariff all day
    assert cal.tariff_at(utc(2027, 1, 1, 12)) == 2  # New Year (every year), a Friday
    assert cal.tariff_at(utc(2027, 1, 4, 12)) == 1  # the Monday after


def test_seasons_wrap_over_new_year():
    blob = encode([(4, 1, 1), (10, 1, 2)], {1: bytes([1] * 7), 2: bytes([2] * 7)}, {1: [(0, 1)], 2: [(0, 3)]})
    cal = Calendar(blob)
    assert cal.tariff_at(utc(2026, 2, 1)) == 3  # still winter: last year's last season
    assert cal.tariff_at(utc(2026, 6, 1)) == 1
    assert cal.tariff_at(utc(2026, 11, 1)) == 3


def test_southern_hemisphere_rules():
    # UTC+10, summer from first Sunday of October to first Sunday of April (02:00 standard)
    blob = encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1)]}, offset=600, shift=60,
                  dst_start=(10, 1, 6, 120), dst_end=(4, 1, 6, 120))
    cal = Calendar(blob)
    assert cal.offset_at(utc(2026, 1, 15)) == 11 * 3600
    assert cal.offset_at(utc(2026, 6, 15)) == 10 * 3600


def test_out_of_range_offsets_and_dates_are_refused():
    for kwargs in ({"offset": 900}, {"shift": 60, "dst_start": (13, 1, 6, 0), "dst_end": (10, 5, 6, 0)}):
        with pytest.raises(ConfigError) as e:
            Calendar(encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1)]}, **kwargs))
        assert e.value.code == E_RANGE
    with pytest.raises(ConfigError):
        Calendar(encode([(2, 30, 1)], {1: bytes([1] * 7)}, {1: [(0, 1)]}))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_are_a_calendar_or_a_config_error(blob):
    try:
        Calendar(blob)
    except ConfigError as e:
        assert 1 <= e.code <= 7


day_profile = st.lists(st.tuples(st.integers(1, 1439), st.integers(1, 4)), max_size=6, unique_by=lambda s: s[0]).map(
    lambda sw: [(0, 1)] + sorted(sw))


@settings(max_examples=60, deadline=None)
@given(days=st.lists(day_profile, min_size=1, max_size=4), week=st.lists(st.integers(0, 3), min_size=7, max_size=7),
       t=st.integers(1767225600, 1830297600), shift=st.sampled_from([0, 60]))
def test_the_tariff_holds_until_next_change(days, week, t, shift):
    n = len(days)
    blob = encode([(1, 1, 1)], {1: bytes(1 + w % n for w in week)}, {i + 1: d for i, d in enumerate(days)},
                  offset=60, shift=shift, dst_start=(3, 5, 6, 120), dst_end=(10, 5, 6, 120))
    cal = Calendar(blob)
    nxt = cal.next_change(t)
    assert t < nxt <= t + 86400 + 3600
    tariff = cal.tariff_at(t)
    for probe in range(t, nxt, max(1, (nxt - t) // 7)):
        assert cal.tariff_at(probe) == tariff


def test_calendar_header_layout_matches_the_documented_size():
    assert struct.calcsize("<HBBBBBBIhh") + 2 * struct.calcsize("<BBBH") == 26


def test_the_week_runs_calendars_are_what_the_head_ends_builder_makes():
    # firmware/weekrun.py carries them as bytes so that a module's week imports no head-end code
    from firmware.d100fc import calendar_blob
    from firmware.weekrun import BAD_CALENDAR, TWO_TARIFF

    assert TWO_TARIFF == calendar_blob.encode(
        [(1, 1, 1), (10, 1, 2)], {1: bytes([1, 1, 1, 1, 1, 2, 2]), 2: bytes([3, 3, 3, 3, 3, 2, 2])},
        {1: [(0, 2), (420, 1), (1380, 2)], 2: [(0, 2)], 3: [(0, 2), (420, 3), (1260, 1), (1380, 2)]},
        [(0, 1, 1, 2), (0, 5, 9, 2)], 0, 180, 0)
    assert BAD_CALENDAR == calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 7)]})
