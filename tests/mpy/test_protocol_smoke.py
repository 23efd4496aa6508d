from protocol import frame, messages


def test_hourly_roundtrip_through_a_sealed_frame():
    key = b"k" * 16
    h = messages.Hourly(490000, 3, 150, 0x71, (1, 2, 3), (4, 5, 6, 7, 8, 9))
    wire = frame.seal_frame(frame.Frame(0x1234, frame.T_DATA, 0x2A, 0, 7, h.encode()), key)
    assert len(wire) <= frame.FRAME_MAX
    got = messages.decode(frame.open_frame(wire, key).payload)
    assert got == h
