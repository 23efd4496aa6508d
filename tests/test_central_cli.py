"""``balans central import|balance|alerts`` through the CSV interface of docs/central.md."""

import json

from balans.cli import main
from central import synth


def test_import_balance_and_alerts_from_csv(tmp_path, capsys):
    d = synth.district(flats=50, history_days=7, test_days=1, seed=3, theft_share=0, stopped_share=0,
                       slow_share=0, unmetered_share=0, leak_share=0, gap_share=0)
    d.events.append(("e3", (d.day0 + 7) * 86400 + 3600, "magnet", 0))
    d.write_csv(tmp_path)
    with open(tmp_path / "readings.csv", "a") as f:
        f.write("e1,2026-01-12T03:00:00Z,-4\nnobody,2026-01-12T03:00:00Z,1\n")
    db = str(tmp_path / "balans.db")
    base = ["central", "--db", db]
    assert main(base + ["import", "--groups", str(tmp_path / "groups.csv"),
                        "--meters", str(tmp_path / "meters.csv")]) == 0
    code = main(base + ["import", "--readings", str(tmp_path / "readings.csv"), "--events",
                        str(tmp_path / "events.csv")])
    out, err = capsys.readouterr()
    assert code == 1
    lines = sum(1 for _ in open(tmp_path / "readings.csv"))
    assert "readings.csv:%d: value '-4'" % (lines - 1) in err and "readings.csv:%d: unknown meter 'nobody'" % lines in err
    assert "readings: %d hourly values" % (lines - 3) in out and "events: 1" in out

    assert main(base + ["balance", "--day", "2026-01-12", "--format", "json"]) == 0
    balances = json.loads(capsys.readouterr().out)["balances"]
    e0 = next(b for b in balances if b["group_id"] == "E0")
    assert e0["status"] == "ok" and e0["completeness"] == 1.0 and abs(e0["imbalance_pct"]) < 2
    assert main(base + ["balance", "--day", "2026-01-12", "--group", "E1", "--hourly"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 25 and table[1].split()[:2] == ["E1", "entrance"]

    assert main(base + ["alerts", "--day", "2026-01-12", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["day"] == "2026-01-12"
    assert [(a["kind"], a["point_id"]) for a in report["alerts"]] == [("tamper", "e3")]


def test_a_missing_file_is_one_clear_error(tmp_path, capsys):
    assert main(["central", "--db", str(tmp_path / "x.db"), "import", "--groups", str(tmp_path / "none.csv")]) == 1
    assert "none.csv:0: cannot open" in capsys.readouterr().err
