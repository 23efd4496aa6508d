"""A simulated week of the whole module firmware under real MicroPython on a small heap.

The firmware is compiled with mpy-cross first, as a board would carry it. Three
meters pulse all week (1.6 million pulses), tariffs switch, checkpoints and hourly
reports run, and every event kind happens (firmware/weekrun.py has the script).
"""

import pytest

from firmware.bench import build_mpy, romfs_image, week_run

# Imported from .mpy files, the unix port keeps the bytecode in the heap (a board keeps it in
# flash) and its objects carry 8-byte pointers: the week needs 90 KB then (docs/benchmarks.md).
HEAP = 96 * 1024
# From a ROMFS image (bytecode runs in place, as from a board's ROMFS partition) the week fits
# in 64 KB beside the image, which the unix port must also hold in its heap.
ROMFS_HEAP = 64 * 1024


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpy")
    build_mpy(str(out))
    return str(out)


def test_a_week_on_a_96k_heap_counts_every_pulse_and_reports_every_hour(build):
    figures = week_run(build, 7, HEAP)
    assert figures["exact"], figures
    assert figures["pulses"] > 1000000
    assert figures["hourly"] == 7 * 24 + 48  # every hour, plus one 48-hour backfill
    assert figures["ticks_per_hour"] >= 60
    assert figures["events"] >= 100 and figures["relay_switches"] > 2


def test_a_week_run_from_romfs_fits_64k_beside_the_image(build, tmp_path):
    image = str(tmp_path / "week.romfs")
    size = romfs_image(build, image)
    figures = week_run(build, 7, size + ROMFS_HEAP, romfs=image)
    assert figures["exact"] and figures["hourly"] == 7 * 24 + 48, figures
