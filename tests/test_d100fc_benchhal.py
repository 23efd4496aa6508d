"""BenchHAL keeps to the HAL contract without inheriting it (it saves the base class's RAM)."""

import inspect

from firmware.common.benchhal import BenchHAL
from firmware.common.hal import HAL

MODULE_SIDE = ("ticks_ms", "unix_time", "set_unix_time", "pulse_attach", "relay_set", "battery_mv",
               "magnet_present", "cover_open", "power_ok", "flash_path", "watchdog_feed")


def test_benchhal_implements_the_module_side_of_the_contract_with_the_same_signatures():
    for name in MODULE_SIDE:
        assert inspect.signature(getattr(HAL, name)) == inspect.signature(getattr(BenchHAL, name)), name


def test_the_module_uses_no_hal_method_outside_that_list():
    import re
    from pathlib import Path
    used = set()
    for path in Path("firmware/d100fc").glob("*.py"):
        if path.name != "board.py":  # the board's main loop, not the module: it also idles (HAL.idle)
            used |= set(re.findall(r"hal\.(\w+)\(", path.read_text()))
    assert used and used <= set(MODULE_SIDE), used - set(MODULE_SIDE)
