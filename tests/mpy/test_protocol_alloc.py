# The firmware's per-frame path allocates nothing after warm-up: checked with
# micropython.heap_lock(), under which any heap allocation raises MemoryError.
# MicroPython only (tests/mpy/conftest.py keeps CPython from collecting it).
import micropython

from protocol import frame
from protocol.ccm import CCM, TAG_LEN

KEY = bytes(range(16))
NONCE = bytes(13)
AAD = bytes(11)
PLAIN = bytes(range(frame.PAYLOAD_MAX))


def allocates(fn):
    """Whether calling fn() (no arguments: a call with *args itself allocates) touches the heap."""
    fn()  # warm-up: first calls may intern names or grow dicts
    micropython.heap_lock()
    try:
        fn()
    except MemoryError:
        return True
    finally:
        micropython.heap_unlock()
    return False


def test_the_probe_sees_an_allocation():
    assert allocates(lambda: bytearray(8))
    ccm = CCM(KEY)
    assert allocates(lambda: ccm.seal(NONCE, AAD, PLAIN))  # seal returns a new buffer


def test_ccm_into_buffers_allocates_nothing():
    ccm = CCM(KEY)
    out = bytearray(frame.FRAME_MAX)
    assert not allocates(lambda: ccm.seal_into(NONCE, AAD, PLAIN, out, frame.HEADER_LEN))
    sealed = out[frame.HEADER_LEN:frame.HEADER_LEN + len(PLAIN) + TAG_LEN]
    plain = bytearray(frame.PAYLOAD_MAX)
    assert not allocates(lambda: ccm.open_into(NONCE, AAD, sealed, plain))
    assert plain == PLAIN


def test_replay_window_on_a_known_source_allocates_nothing():
    window = frame.ReplayWindow()
    window.accept(0x2A, 1000)
    assert not allocates(lambda: window.check(0x2A, 1001))
    assert not allocates(lambda: window.check(0x2A, 999))
    counter = [1000]

    def next_frame():
        counter[0] += 3
        window.accept(0x2A, counter[0])
        window.accept(0x2A, counter[0] - 1)  # a late one, inside the window

    assert not allocates(next_frame)
    assert window.highest(0x2A) == counter[0]


def test_relaying_allocates_nothing():
    wire = frame.seal_frame(frame.Frame(0x1234, frame.T_DATA, 0x2A, 0, 1, PLAIN), KEY)

    def relay():
        wire[frame.O_HOPS] = 0
        frame.relay_header(wire, 0x11, 0x22)

    assert not allocates(relay)
    assert not allocates(lambda: frame.key_cipher(KEY))  # the per-key context is found, not rebuilt
