# service.py - written by `balans flash`: is the service jumper set? (docs/installer.md, "Locking")
# The jumper ties SERVICE_PIN to ground; without it the board is locked: no REPL on its UART.
SERVICE_PIN = "SERVICE"  # the board's pin name for the service jumper (board support sets it)


def jumper():
    try:
        from machine import Pin
    except ImportError:  # the bench emulator (MicroPython unix port, no Pin): its jumper is a variable
        import os

        return os.getenv("BALANS_SERVICE_JUMPER") == "1"
    return Pin(SERVICE_PIN, Pin.IN, Pin.PULL_UP).value() == 0
