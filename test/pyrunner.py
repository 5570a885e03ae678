"""Run the Python test suites (emulator, integration) with unittest.

Usage: /usr/bin/python3 test/pyrunner.py DIR [DIR...] [-k PATTERN]
Prints unittest's usual report and then "<suite>: N passed, N failed" for
the whole set, which test/run.sh adds up. Exit status 1 if anything failed.
"""
import argparse
import os
import sys
import unittest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("-k", dest="pattern", action="append", default=None,
                    help="only tests whose name contains this substring")
    ap.add_argument("--name", default="python")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    loader = unittest.TestLoader()
    if args.pattern:
        loader.testNamePatterns = ["*%s*" % p for p in args.pattern]
    suite = unittest.TestSuite()
    for d in args.dirs:
        suite.addTests(loader.discover(start_dir=d, pattern="test_*.py",
                                       top_level_dir=d))
    runner = unittest.TextTestRunner(verbosity=2 if args.v else 1,
                                     stream=sys.stdout)
    sys.stdout.flush()
    res = runner.run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped
    line = "%s: %d passed, %d failed" % (args.name, passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    sys.exit(1 if failed or res.testsRun == 0 else 0)


if __name__ == "__main__":
    main()
