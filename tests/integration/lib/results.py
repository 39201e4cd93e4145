# SPDX-License-Identifier: Apache-2.0
"""Check counting shared by the integration tests: exit 0 when all held."""
import sys


class Results:
    def __init__(self, name):
        self.name = name
        self.failed = 0
        self.count = 0

    def check(self, cond, what):
        self.count += 1
        print(("  ok   " if cond else "  FAIL ") + what, flush=True)
        if not cond:
            self.failed += 1
        return cond

    def run(self, main):
        """main(), then done(); an exception out of main (raised after its own
        cleanup, e.g. a Cluster's teardown) is printed and counts as a failed
        check, so a broken step fails the test instead of crashing it."""
        try:
            main()
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            self.check(False, "test ran to the end (%r)" % e)
        self.done()

    def done(self):
        print("%s: %d checks, %d failed" % (self.name, self.count, self.failed))
        sys.exit(1 if self.failed else 0)
