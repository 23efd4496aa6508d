# tests/mpy/ holds MicroPython test modules; tests/test_micropython.py runs each under the unix port.
# CPython must not collect the ones that import MicroPython-only modules (micropython, vfs).
collect_ignore_glob = ["test_d100fc*.py", "test_ota_powercut.py", "test_protocol_alloc.py"]
