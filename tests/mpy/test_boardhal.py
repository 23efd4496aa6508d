# The real board's HAL (firmware/common/boardhal.py) and CC1101 driver (firmware/common/cc1101.py)
# against an emulated transceiver at its SPI pins (simulator/cc1101.py), on CPython and MicroPython.
from simulator.cc1101 import ADC, RTC, UART, WDT, BYTE_US, CC1101Emu, Clock, Pin

from firmware.common.boardhal import ACK_TIMEOUT_MS, RELAY_PULSE_MS, BoardHAL
from firmware.common.cc1101 import CC1101, RadioError
from firmware.common.hal import HAL
from firmware.common.mesh.mac import (BROADCAST_CHANNEL, CHANNEL_BASE_KHZ, CHANNEL_SPACING_KHZ, SUPERFRAME_MS,
                                      WAKE_PREAMBLE_MS, unicast_channel)
from protocol.frame import BROADCAST, CONCENTRATOR, F_ACK_REQ, T_ACK, T_DATA, Frame, seal_frame

NET_KEY = bytes(range(16))
OWN = 2  # the channel our router samples for unicasts at phase 300
SAMPLES = ((300, OWN), (1300, BROADCAST_CHANNEL))  # a module's unicast and broadcast samples


def board(**parts):
    clock = Clock()
    emu = CC1101Emu(clock)
    radio = CC1101(emu, emu.select, emu.gdo0_level, clock)
    hal = BoardHAL(radio, clock, RTC(clock), **parts)
    return hal, emu, clock


def frame(kind=T_DATA, link_dst=7, payload=b"x" * 39):
    f = Frame(0x42, kind, 3, 9, 1, payload)
    f.link_dst = link_dst
    return bytes(seal_frame(f, NET_KEY))


def test_it_implements_the_whole_hal_contract():
    names = [n for n in dir(HAL) if not n.startswith("_")]
    hal, _, _ = board()
    missing = [n for n in names if not callable(getattr(hal, n, None))]
    assert names and not missing, missing


def test_reset_programs_the_channel_plan_at_38_4_kbaud_and_10_dbm():
    _, emu, _ = board()
    r = emu.regs
    freq = (r[0x0D] << 16 | r[0x0E] << 8 | r[0x0F]) * 26000000 // 65536
    assert abs(freq - CHANNEL_BASE_KHZ * 1000) < 1000, freq  # channel 0
    spacing = (256 + r[0x14]) * (1 << (r[0x13] & 0x03)) * 26000000 // (1 << 18)
    assert abs(spacing - CHANNEL_SPACING_KHZ * 1000) < 100, spacing
    assert abs(freq + BROADCAST_CHANNEL * spacing - 433920000) < 1000  # the broadcast channel: the band's centre
    baud = (256 + r[0x11]) * (1 << (r[0x10] & 0x0F)) * 26000000 // (1 << 28)
    assert abs(baud - 38400) < 100, baud
    assert r[0x08] & 0x03 == 1 and r[0x08] & 0x04  # variable length, CRC on
    assert emu.patable == 0xC0 and emu.state == 0x00  # +10 dBm, asleep
    assert r[0x1C] & 0x0F == 0x09  # AGCCTRL1: carrier sense 7 dB below MAGN_TARGET (simulator.radio.CCA_DBM)


def test_a_missing_transceiver_is_named():
    clock = Clock()
    emu = CC1101Emu(clock)
    emu.version = 0x00  # SPI lines floating: every read is 0
    try:
        CC1101(emu, emu.select, emu.gdo0_level, clock).reset()
    except RadioError as e:
        assert "no CC1101" in str(e)
    else:
        raise AssertionError("reset accepted a bus without a CC1101")


def test_a_64_byte_frame_goes_out_whole_through_the_fifo():
    hal, emu, _ = board()
    f = frame(link_dst=CONCENTRATOR, payload=b"y" * 39)
    assert len(f) == 64  # one more than the FIFO with its length byte
    assert hal.radio_send(f, cca=True)
    assert emu.sent == [(f, 4 * BYTE_US, unicast_channel(CONCENTRATOR))]  # the 4 preamble bytes and no more


def test_a_unicast_to_a_router_carries_the_wake_preamble_and_an_ack_none():
    hal, emu, _ = board()
    # (the ACK first: it answers the last frame taken, here the board's start, within ACK_DELAY_MS + ACK_GUARD_MS)
    assert hal.radio_send(frame(kind=T_ACK, link_dst=7, payload=b"a" * 11), cca=False)
    assert hal.radio_send(frame(link_dst=7), cca=False)
    (_, ack, ack_channel), (_, wake, channel) = emu.sent
    assert WAKE_PREAMBLE_MS * 1000 + 4 * BYTE_US <= wake < WAKE_PREAMBLE_MS * 1000 + 4 * BYTE_US + 500
    assert ack == 4 * BYTE_US
    assert channel == unicast_channel(7)  # the receiver's channel
    assert ack_channel == unicast_channel(3)  # ours, where the frame it answers came in


def test_carrier_sense_refuses_a_busy_channel_unless_told_not_to():
    hal, emu, _ = board()
    emu.jammed = True
    assert not hal.radio_send(frame(), cca=True)
    assert emu.sent == []
    assert hal.radio_send(frame(), cca=False)
    assert len(emu.sent) == 1


def test_a_listening_receiver_takes_a_64_byte_frame_as_it_arrives():
    hal, emu, clock = board()
    f = frame(link_dst=CONCENTRATOR)
    hal.radio_listen()
    emu.incoming(f, at=clock.us + 5000, rssi=-97)
    assert hal.idle(100)
    assert hal.radio_receive() == f
    assert hal.radio_rssi() == -97
    assert hal.radio_receive() is None


def test_a_frame_with_a_bad_crc_is_counted_not_delivered():
    hal, emu, clock = board()
    hal.radio_listen()
    emu.incoming(frame(), at=clock.us + 5000, crc_ok=False)
    emu.incoming(frame(payload=b"z" * 39), at=clock.us + 40000)
    assert hal.idle(100)
    assert hal.radio_receive() == frame(payload=b"z" * 39)
    assert hal.radio.lost == 1


def sampling(hal, clock, ms):
    """Idle like a module's main loop for ``ms``: samples at phase 300 and 1300 of the superframe."""
    end = clock.us + ms * 1000
    got = []
    while clock.us < end:
        if hal.idle((end - clock.us) // 1000, SUPERFRAME_MS, SAMPLES, 0):
            got.append(hal.radio_receive())
    return got


def test_a_sleeping_router_hears_a_woken_frame_at_its_sample_and_nothing_between():
    hal, emu, clock = board()
    hal.radio_listen()
    woken = frame(payload=b"w" * 39)
    # A sender aims its wake preamble to start just before the sample at 2300 ms.
    emu.incoming(woken, at=2297000, preamble_us=WAKE_PREAMBLE_MS * 1000)
    emu.incoming(frame(payload=b"n" * 39), at=2700000)  # no preamble, between samples: not for us
    assert sampling(hal, clock, 4000) == [woken]


def test_each_sample_listens_on_its_own_channel():
    hal, emu, clock = board()
    hal.radio_listen()
    unicast = frame(payload=b"u" * 39)
    beacon = frame(link_dst=BROADCAST, payload=b"b" * 39)
    lead = WAKE_PREAMBLE_MS * 1000
    emu.incoming(frame(payload=b"o" * 39), at=2297000, preamble_us=lead, channel=OWN + 1)  # a neighbour's channel
    emu.incoming(unicast, at=4297000, preamble_us=lead, channel=OWN)
    emu.incoming(frame(link_dst=BROADCAST, payload=b"c" * 39), at=3297000, preamble_us=lead, channel=OWN)
    emu.incoming(beacon, at=5297000, preamble_us=lead, channel=BROADCAST_CHANNEL)
    assert sampling(hal, clock, 6000) == [unicast, beacon]


def test_the_always_listening_concentrator_waits_for_an_ack_on_the_child_s_channel_then_goes_back_to_its_own():
    hal, emu, clock = board()
    hal.radio_listen()
    own = unicast_channel(CONCENTRATOR)
    assert not hal.idle(5, channel=own) and emu.regs[0x0A] == own
    assert hal.radio_send(frame(kind=T_DATA | F_ACK_REQ, link_dst=7), cca=False)
    assert emu.regs[0x0A] == unicast_channel(7)
    ack = frame(kind=T_ACK, link_dst=3, payload=b"a" * 11)
    emu.incoming(ack, at=clock.us + 11000, channel=unicast_channel(7))
    assert hal.idle(ACK_TIMEOUT_MS, channel=own) and hal.radio_receive() == ack
    up = frame(link_dst=CONCENTRATOR)
    emu.incoming(up, at=clock.us + 3000, channel=own)
    assert hal.idle(50, channel=own) and hal.radio_receive() == up


def test_the_receiver_is_on_a_fraction_of_a_percent_between_samples():
    hal, emu, clock = board()
    hal.radio_listen()
    on0 = emu.rx_time_us()
    sampling(hal, clock, 60000)
    share = (emu.rx_time_us() - on0) / 60000000
    # Two samples of ~1 ms per 2 s superframe: about 0.1 %, 15.7 mA * 0.001 = 16 uA.
    assert 0.0003 < share < 0.002, share


def test_after_sending_it_sleeps_until_the_acknowledgement_is_due_and_listens_only_while_it_comes():
    from firmware.common.mesh.mac import ACK_DELAY_MS, ACK_GUARD_MS, airtime_us
    hal, emu, clock = board()
    FAR = ((900, OWN), (1900, BROADCAST_CHANNEL))  # samples well after these exchanges
    hal.radio_listen()
    assert hal.radio_send(frame(kind=T_DATA | F_ACK_REQ), cca=False)
    ack = frame(kind=T_ACK, payload=b"a" * 11)
    on = emu.rx_time_us()
    emu.incoming(ack, at=clock.us + ACK_DELAY_MS * 1000)  # the addressee acknowledges at its time
    assert hal.idle(ACK_TIMEOUT_MS, SUPERFRAME_MS, FAR, 0)
    assert hal.radio_receive() == ack
    # on from ACK_GUARD_MS before the ACK to its end, not while the addressee checked the frame
    assert emu.rx_time_us() - on <= (ACK_GUARD_MS + 1) * 1000 + airtime_us(ack)
    on = emu.rx_time_us()
    hal.idle(200, SUPERFRAME_MS, FAR, 0)  # no sample is due: the receiver sleeps
    assert emu.rx_time_us() - on < 200
    # No acknowledgement, or one later than its window (a slow addressee): on for the window, then asleep.
    assert hal.radio_send(frame(kind=T_DATA | F_ACK_REQ), cca=False)
    emu.incoming(frame(kind=T_ACK, payload=b"c" * 11), at=clock.us + (ACK_DELAY_MS + 3 * ACK_GUARD_MS) * 1000)
    on = emu.rx_time_us()
    assert not hal.idle(ACK_TIMEOUT_MS, SUPERFRAME_MS, FAR, 0)
    assert emu.rx_time_us() - on <= (2 * ACK_GUARD_MS + 2) * 1000
    # A frame that asks for no acknowledgement (a broadcast) leaves the receiver asleep at once.
    assert hal.radio_send(frame(kind=T_DATA), cca=False)
    emu.incoming(frame(kind=T_ACK, payload=b"b" * 11), at=clock.us + ACK_DELAY_MS * 1000)
    assert not hal.idle(ACK_TIMEOUT_MS, SUPERFRAME_MS, FAR, 0)


def test_an_acknowledgement_waits_for_its_time_after_the_frame_it_answers():
    from firmware.common.mesh.mac import ACK_DELAY_MS
    hal, emu, clock = board()
    hal.radio_listen()
    emu.incoming(frame(kind=T_DATA | F_ACK_REQ), at=clock.us + 1000)
    assert hal.idle(100) and hal.radio_receive()
    taken = clock.us
    clock.sleep_us(4000)  # the station parsed it and sealed the ACK sooner than its time
    assert hal.radio_send(frame(kind=T_ACK, payload=b"a" * 11), cca=False)
    assert len(emu.sent) == 1 and clock.us - taken >= ACK_DELAY_MS * 1000


def test_pulses_relay_sensors_clock_and_link():
    pulse = (Pin(), Pin(), Pin())
    coils = (Pin(0), Pin(0))
    uart = UART()
    hal, _, clock = board(pulse_pins=pulse, relay_pins=coils, magnet=Pin(1), cover=Pin(0),
                          power_ok=Pin(1), battery_adc=ADC(36408), watchdog=WDT(), uart=uart)
    seen = []
    hal.pulse_attach(2, lambda ch, t: seen.append((ch, t)))
    start = hal.ticks_ms()  # the radio's reset took the SPI writes' time
    clock.advance(5000)
    pulse[2].fall()
    assert seen == [(2, start + 5)]
    for c in coils:
        c.clock = clock
    hal.relay_set(False)
    (t_on, one), (t_off, zero) = coils[1].history
    assert (one, zero) == (1, 0) and t_off - t_on == RELAY_PULSE_MS * 1000 and coils[0].history == []
    assert 3660 <= hal.battery_mv() <= 3670  # 36408 / 65535 * 3.3 V, doubled
    assert not hal.magnet_present() and not hal.cover_open() and hal.power_ok()
    hal.cover = Pin(1)
    assert hal.cover_open()
    hal.set_unix_time(1780003600)
    assert hal.rtc.set_to[:3] == (2026, 5, 28) and hal.rtc.set_to[4:7] == (21, 26, 40)
    hal.watchdog_feed()
    assert hal.watchdog.fed == 1
    assert hal.link_write(b"abc") == 3 and uart.written == b"abc"
    uart.inbox = b"xyz"
    assert hal.link_read() == b"xyz" and hal.link_read() == b""


def test_byte_time_matches_the_mac():
    from firmware.common.cc1101 import BYTE_US as DRIVER_BYTE_US
    from firmware.common.mesh.mac import BITRATE
    assert DRIVER_BYTE_US == BYTE_US and abs(BYTE_US - 8000000 / BITRATE) < 1


def test_a_long_idle_feeds_the_watchdog_within_its_period():
    from firmware.common.boardhal import WATCHDOG_MS
    hal, _, clock = board(watchdog=WDT())
    hal.radio_sleep()  # the longest sleeps: nothing to sample
    hal.idle(60000)
    assert hal.watchdog.fed > 60000 // WATCHDOG_MS


def test_after_acknowledging_a_frame_it_sleeps_unless_the_frame_said_another_follows():
    from protocol.frame import L_MORE, set_link_flags
    for more in (False, True):
        hal, emu, clock = board()
        hal.radio_listen()
        first = bytearray(frame(kind=T_DATA | F_ACK_REQ))
        set_link_flags(first, L_MORE if more else 0)
        emu.incoming(bytes(first), at=clock.us + 1000)
        assert hal.idle(100) and hal.radio_receive() == bytes(first)
        clock.sleep_us(3000)  # the station checks it and acknowledges
        assert hal.radio_send(frame(kind=T_ACK, payload=b"a" * 11), cca=False)
        on = emu.rx_time_us()
        follow = frame(payload=b"f" * 39)
        emu.incoming(follow, at=clock.us + 5000)  # the sender's next frame, right behind, no wake preamble
        got = hal.idle(ACK_TIMEOUT_MS, SUPERFRAME_MS, SAMPLES, 0)
        if more:
            assert got and hal.radio_receive() == follow
        else:
            assert not got and emu.rx_time_us() - on < 1000  # back to sampling: no receiver for it
