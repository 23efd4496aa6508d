# boot.py - written by `balans flash` (docs/installer.md, "Locking"). Without the service
# jumper, Ctrl-C cannot interrupt the application, and main.py never returns to the REPL,
# so neither the REPL nor the raw REPL (and with them the keys) can be reached over the UART.
# Any failure here locks too: a damaged service.py must not open the board.
import micropython

try:
    import service

    locked = not service.jumper()
except Exception:  # noqa: BLE001
    locked = True
if locked:
    micropython.kbd_intr(-1)
