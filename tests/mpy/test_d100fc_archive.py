# The hourly archive on LittleFS under MicroPython: 45 days kept and served by range.
from d100fc_flash import MOUNT, mount
from firmware.d100fc.archive import KEEP_DAYS
from protocol import messages
from tests.d100fc_scenario import make

START = 1780272000


def test_45_days_of_hourly_records_on_a_256k_littlefs_volume():
    mount(block_size=4096, block_count=64)
    hal, up, mod = make(MOUNT, START, max_sleep_s=3600, checkpoint_s=3600)
    for hour in range((KEEP_DAYS + 2) * 24):
        hal.advance(3600)
        for _ in range(hour % 5):
            hal.pulse(0)
            hal.advance(ms=100)
        mod.tick()
        del up.sent[:]  # the reports themselves are not the point here
    hours = mod.archive.hours()
    assert len(hours) >= 45 * 24 and hours[-1] == mod.hour
    assert hours[0] > START // 3600 + 24  # the oldest days were removed
    served = 0
    for payload in mod.archive_range(mod.hour - 45 * 24, 45 * 24 + 1):
        h = messages.decode(payload)
        assert h.delta(0, 1) == (h.hour - 1 - START // 3600) % 5 or served == 0
        served += 1
    assert served == 45 * 24 + 1
