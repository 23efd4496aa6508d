"""``balans demo`` end to end: real firmware, simulated radio, real agent, real MQTT broker, central on SQLite."""

import json
import subprocess
import sys

from balans.toolchain import REPO


def test_demo_stores_every_reading_once_and_balances():
    proc = subprocess.run([sys.executable, "-m", "balans", "demo", "--json", "--modules", "4", "--seed", "7"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    # 4 modules x 3 meters x about 50 hourly reports
    assert summary["readings_produced"] > 4 * 3 * 40
    assert summary["readings_stored"] == summary["readings_produced"]
    assert summary["duplicates"] == 0 and summary["wrong_values"] == 0
    assert summary["exactly_once"] and summary["agent_drained"]
    assert set(summary["balance"]) == {"house-1-electricity", "house-1-water"}
    for group in summary["balance"].values():
        assert group["completeness"] == 1.0
        assert group["input"] > 0
        assert abs(group["input"] - group["members"]) < 1e-9
        assert abs(group["imbalance"]) < 1e-9
