"""Django's own session tests (``tests/sessions_tests`` of the installed Django's sdist:
``SessionTestsMixin`` and ``SessionMiddlewareTests``, with ``USE_TZ`` False and True)
against ``SESSION_ENGINE = "gatekeep.django.sessions"``, in-process and on real servers.

Each run is a subprocess with Django's test runner (``_django_runner.py``). Every test
must pass but the known differences below, each documented in README.md ("Django
session engine"); a new failure, or a known one that starts passing, fails here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import gatekeep

from ._django_sdist import FetchError, django_tests_dir

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]

#: Django's test -> (why it fails, a phrase of its failure that shows that reason).
KNOWN: dict[str, tuple[str, str]] = {
    # Strict mode: the store only uses keys it drew itself (47 characters, 256 random
    # bits); "12345678" is refused as a session key, so it cannot be fixed by a client.
    "test_session_key_valid_string_saved": ("strict keys", "None != '12345678'"),
    # Reads Django's database Session model directly (Session.objects.get): there is no
    # such row with any other engine. The engine's behaviour it checks (an emptied
    # session is saved and keeps its cookie) is tested in tests/integrations.
    "test_empty_session_saved": ("database only", "Session matching query does not exist"),
}
CLASSES = {
    "GatekeepSessionTests": "test_session_key_valid_string_saved",
    "GatekeepSessionWithTimeZoneTests": "test_session_key_valid_string_saved",
    "GatekeepSessionMiddlewareTests": "test_empty_session_saved",
    "GatekeepSessionMiddlewareWithTimeZoneTests": "test_empty_session_saved",
}


@pytest.fixture(scope="module")
def django_tests() -> Path:
    try:
        return django_tests_dir()
    except FetchError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and Django's test suite could not be fetched: {exc}")
        pytest.skip(f"Django's test suite could not be fetched: {exc}")
        raise  # unreachable


def defined_tests(tests_dir: Path) -> dict[str, int]:
    """How many test methods Django's ``SessionTestsMixin`` and ``SessionMiddlewareTests``
    define, read from the fetched source."""
    tree = ast.parse((tests_dir / "sessions_tests" / "tests.py").read_text())
    return {
        node.name: sum(
            isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")
            for m in node.body
        )
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and node.name in ("SessionTestsMixin", "SessionMiddlewareTests")
    }


def run_suite(tests_dir: Path, tmp_path: Path, redis_url: str | None) -> dict[str, Any]:
    src = Path(gatekeep.__file__).resolve().parent.parent  # this checkout's gatekeep
    path = [str(HERE), str(tests_dir), str(src)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="_django_settings",
        PYTHONPATH=os.pathsep.join(path),
        GATEKEEP_CONFORMANCE_PREFIX="c" + uuid.uuid4().hex[:12],
    )
    env.pop("GATEKEEP_CONFORMANCE_REDIS", None)
    if redis_url is not None:
        env["GATEKEEP_CONFORMANCE_REDIS"] = redis_url
    out = tmp_path / "outcomes.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "_django_runner.py"), str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), (
        f"the runner wrote no results (exit {done.returncode}):\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", STORES)
def test_django_session_suite(kind: str, django_tests: Path, servers: Any, tmp_path: Path) -> None:
    url = None if kind == "memory" else servers.get(kind).url
    report = run_suite(django_tests, tmp_path, url)
    outcomes: dict[str, dict[str, str]] = report["outcomes"]
    assert report["testsRun"] == len(outcomes)

    per_class: dict[str, int] = {}
    for test_id in outcomes:
        module, cls, _name = test_id.split(".")
        assert module == "_django_suite" and cls in CLASSES, test_id
        per_class[cls] = per_class.get(cls, 0) + 1
    # each class ran every test its Django class defines (Django 4.2: 37 and 11; later
    # releases more), with USE_TZ=True as with USE_TZ=False
    defined = defined_tests(django_tests)
    assert defined["SessionTestsMixin"] >= 37 and defined["SessionMiddlewareTests"] >= 11
    assert per_class == {
        "GatekeepSessionTests": defined["SessionTestsMixin"],
        "GatekeepSessionWithTimeZoneTests": defined["SessionTestsMixin"],
        "GatekeepSessionMiddlewareTests": defined["SessionMiddlewareTests"],
        "GatekeepSessionMiddlewareWithTimeZoneTests": defined["SessionMiddlewareTests"],
    }, (per_class, defined)

    not_passed = {test_id: o for test_id, o in outcomes.items() if o["outcome"] != "passed"}
    expected = {f"_django_suite.{cls}.{name}" for cls, name in CLASSES.items()}
    details = "\n".join(
        f"{t}: {o['outcome']}\n{o['detail'][-1500:]}"
        for t, o in sorted(not_passed.items())
        if t not in expected
    )
    assert set(not_passed) == expected, (
        details or f"known failures now pass: {sorted(expected - set(not_passed))}"
    )
    for test_id, outcome in not_passed.items():
        _why, phrase = KNOWN[test_id.rsplit(".", 1)[1]]
        assert phrase in outcome["detail"], (test_id, outcome["detail"][-1500:])
