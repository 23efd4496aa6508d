# main.py - written by `balans flash`: the first boot stage (docs/ota.md, "Boot").
# With the service jumper set it returns at once, to the REPL, for the installer's tool;
# otherwise it runs the application and never returns (a failure resets the board).
import sys
import time

try:
    import service

    serviced = service.jumper()
except Exception:  # noqa: BLE001 - a damaged service.py keeps the board locked
    serviced = False

if not serviced:
    try:
        import otaboot

        sys.path.insert(0, otaboot.Slots(".").boot())  # the active slot, or the previous one after a failed trial
        from firmware.d100fc import board  # board support: config.json, the HAL, the module's main loop

        board.main()
    except Exception as e:  # noqa: BLE001 - whatever stopped the application, the board resets
        sys.print_exception(e)
    try:
        import machine

        machine.reset()  # a trial image that fails counts a failed boot (ota/slots.py)
    except (ImportError, AttributeError):  # the unix port cannot reset: stop here, locked
        while True:
            time.sleep(1)
