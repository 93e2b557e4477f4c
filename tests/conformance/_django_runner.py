"""Run ``_django_suite`` with Django's test runner and write each test's outcome as JSON.

``python _django_runner.py OUT.json`` with ``DJANGO_SETTINGS_MODULE=_django_settings``
and Django's ``tests/`` directory on ``PYTHONPATH``. Django's runner sets up the test
database and environment; the result class records outcomes by test id.
"""

import json
import sys
import unittest

import django
from django.test.runner import DiscoverRunner


class Recording(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _set(self, test, outcome, detail=""):
        self.outcomes[test.id()] = {"outcome": outcome, "detail": detail}

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "failed", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:  # recorded under the test's own id: its outcome is the worst
            self._set(test, "failed", f"{subtest}: {self._exc_info_to_string(err, test)}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "unexpected success")


class Runner(DiscoverRunner):
    result = None

    def get_resultclass(self):
        return Recording

    def run_suite(self, suite, **kwargs):
        result = super().run_suite(suite, **kwargs)
        Runner.result = result
        return result


def main(out):
    django.setup()
    runner = Runner(verbosity=0, interactive=False)
    runner.run_tests(["_django_suite"])
    result = Runner.result
    with open(out, "w") as f:
        json.dump({"testsRun": result.testsRun, "outcomes": result.outcomes}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
