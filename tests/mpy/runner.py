# Runs under the MicroPython unix port: imports one test module and calls each test_* function.
# Prints "PASS name" / "FAIL name: error" per test and "MPY-RESULT passed failed" at the end;
# tests/test_micropython.py reads that line.
import sys

repo = sys.argv[1]
module_name = sys.argv[2]
sys.path.insert(0, repo)
sys.path.insert(0, repo + "/tests/mpy")

module = __import__(module_name)
passed = failed = 0
for name in sorted(dir(module)):
    if not name.startswith("test_"):
        continue
    try:
        getattr(module, name)()
        passed += 1
        print("PASS", name)
    except Exception as e:
        failed += 1
        print("FAIL", name + ":", repr(e))
        sys.print_exception(e)
print("MPY-RESULT", passed, failed)
