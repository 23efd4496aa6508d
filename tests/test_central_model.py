"""Groups and meters from CSV and from lists: every bad line named, every good one kept."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central import csvio
from central.errors import ImportFailed
from central.model import Model, from_lists
from tests import central_fixtures as fx


def write(path, text):
    path.write_text(text)
    return path


def test_from_lists_builds_the_tree():
    m = fx.model()
    assert set(m.groups) == {"H1", "E1", "E2"}
    assert m.groups["E1"].parent == "H1" and m.groups["E1"].inputs == ("EM1",)
    assert m.meters["f3"].group == "E2"
    assert m.groups["H1"].loss_pct == 1.0
    assert m.children()["H1"] == ["E1", "E2"]


def test_from_lists_refuses_a_broken_reference():
    with pytest.raises(ValueError, match="not a known group"):
        from_lists(fx.GROUPS, fx.METERS + [dict(meter_id="x", group_id="nowhere", resource="electricity")])


def test_csv_reports_each_bad_line_and_keeps_the_rest(tmp_path):
    groups = write(tmp_path / "groups.csv",
                   "group_id,parent_id,level,resource,input_meter_id,loss_pct\n"
                   "H1,,house,electricity,HM,\n"
                   "E1,H1,entrance,electricity,EM1,0.5\n"
                   "E2,H1,flat,electricity,EM2,\n"          # bad level
                   "E3,H9,entrance,electricity,,\n"          # unknown parent
                   "E4,H1,entrance,electricity,EM4,abc\n"    # bad loss
                   "E1,H1,entrance,electricity,EM1,\n"       # duplicate
                   "L1,L2,entrance,water,,\nL2,L1,house,water,,\n")  # a loop
    meters = write(tmp_path / "meters.csv",
                   "meter_id,group_id,resource\nHM,,electricity\nEM1,H1,electricity\n"
                   "a,E1,electricity\nb,E1,water\nc,E1,steam\nd,E1\n")
    model = Model()
    errors = csvio.import_model(model, groups, meters)
    by_line = {(e.source.rsplit("/", 1)[1], e.line): e.reason for e in errors}
    assert "level 'flat'" in by_line[("groups.csv", 4)]
    assert "parent 'H9'" in by_line[("groups.csv", 5)]
    assert "could not convert" in by_line[("groups.csv", 6)]
    assert "duplicate id 'E1' (first on line 3)" in by_line[("groups.csv", 7)]
    assert "loops" in by_line[("groups.csv", 8)] and "loops" in by_line[("groups.csv", 9)]
    assert "measures water" in by_line[("meters.csv", 5)]
    assert "steam" in by_line[("meters.csv", 6)]
    assert "fewer fields" in by_line[("meters.csv", 7)]
    assert set(model.groups) == {"H1", "E1"}
    assert set(model.meters) == {"HM", "EM1", "a"}


def test_a_file_without_the_header_fails_whole(tmp_path):
    with pytest.raises(ImportFailed, match="lacks column"):
        csvio.import_model(Model(), write(tmp_path / "g.csv", "id,parent\nx,y\n"))
    with pytest.raises(ImportFailed, match="cannot open"):
        csvio.import_model(Model(), tmp_path / "absent.csv")


def test_readings_csv(tmp_path):
    path = write(tmp_path / "r.csv", "meter_id,hour_start,value\n"
                 "a,2026-01-20T13:00:00Z,1.25\n"
                 "a,2026-01-20T14:00:00+00:00,0\n"
                 "a,2026-01-20T13:30:00Z,1\n"       # not an hour start
                 "zz,2026-01-20T13:00:00Z,1\n"      # unknown meter
                 "a,2026-01-20T15:00:00Z,-1\n"      # negative
                 "a,2026-01-20T16:00:00,1\n"        # no zone
                 "a,2026-01-20T13:00:00Z,2\n"       # second value
                 "a,yesterday,1\n"
                 "a,2026-01-20T17:00:00Z,nan\n")
    (rows, hours, values), errors = csvio.read_readings(path, {"a": 4})
    assert rows.tolist() == [4, 4] and values.tolist() == [1.25, 0.0]
    assert hours.tolist() == [fx.DAY * 24 + 13, fx.DAY * 24 + 14]
    assert [e.line for e in errors] == [4, 5, 6, 7, 8, 9, 10]
    assert "first on line 2" in errors[4].reason


def test_events_csv(tmp_path):
    path = write(tmp_path / "e.csv", "meter_id,ts,event\na,2026-01-20T13:05:00Z,magnet\n"
                 "a,2026-01-20T13:05:00Z,explosion\nb,2026-01-20T13:05:00Z,tamper\n")
    events, errors = csvio.read_events(path, {"a": None})
    assert events == [("a", fx.DAY * 86400 + 13 * 3600 + 300, "magnet", 0)]
    assert [e.line for e in errors] == [3, 4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab,:.-T0123456789Z\"\n", max_size=30), max_size=8))
def test_garbage_lines_never_crash_and_are_counted(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("g") / "r.csv"
    path.write_text("meter_id,hour_start,value\n" + "\n".join(lines) + "\n")
    try:
        (rows, _, _), errors = csvio.read_readings(path, {"a": 0})
    except ImportFailed as e:
        assert e.errors
        return
    assert len(rows) + len(errors) <= max(1, len("\n".join(lines).splitlines()) + 1)
