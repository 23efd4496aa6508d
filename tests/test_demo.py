"""``balans demo`` end to end: real firmware, simulated radio, real agent, real MQTT broker, central on SQLite."""

import json
import subprocess
import sys

from balans.toolchain import REPO


def test_demo_stores_every_reading_once_balances_and_names_the_faults():
    proc = subprocess.run([sys.executable, "-m", "balans", "demo", "--json", "--modules", "7", "--seed", "7"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    # 7 modules x 3 meters x about 145 hourly reports
    assert summary["readings_produced"] > 7 * 3 * 140
    assert summary["readings_stored"] == summary["readings_produced"]
    assert summary["duplicates"] == 0 and summary["wrong_values"] == 0
    assert summary["exactly_once"] and summary["agent_drained"]
    assert set(summary["balance"]) == {"%s-%s" % (g, r) for g in ("street-1", "house-a", "house-b")
                                       for r in ("electricity", "water")}
    for gid, group in summary["balance"].items():
        assert group["completeness"] == 1.0 and group["input"] > 0
        assert abs(group["imbalance"] - group["expected_imbalance"]) <= 0.002, gid
    # the bypass stole a real share of a flat's day, and only house B shows it
    assert summary["stolen_kwh"] > 0.5
    assert summary["balance"]["house-b-electricity"]["status"] != "ok"
    assert summary["balance"]["house-a-electricity"]["status"] == "ok"
    assert summary["culprit_rank"] is not None and summary["culprit_rank"] <= 3
    assert summary["leak_found"]
    leaks = [a["point_id"] for a in summary["alerts"] if a["kind"] == "leak"]
    assert leaks == [summary["leak_meter"]]  # and no other water meter is called a leak
    assert summary["modules_anchored"] == 7 and summary["broadcasts_refused"] == 0  # hourly tagged time syncs
    assert summary["ok"]


def test_demo_refuses_too_few_modules():
    proc = subprocess.run([sys.executable, "-m", "balans", "demo", "--modules", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "at least 5" in proc.stderr
