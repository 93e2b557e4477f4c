"""Flask: path rules apply to the path Werkzeug routes, not to the raw PATH_INFO.

The test client parses "//login" as a URL with a host, so raw paths go in as
``PATH_INFO`` (and ``SCRIPT_NAME``), the way a WSGI server passes them: already
percent-decoded, as latin-1 text of the UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import MemoryBackend
from gatekeep.flask import RateLimiter, routed_path
from gatekeep.ratelimit import Rule

VIEWS = {
    "/login": "login",
    "/auth/login": "auth-login",
    "/ns": "ns",
    "/dir/": "dir",
    "/page/": "page",
}


def make_app(rate: str = "1000/minute") -> tuple[Flask, list[str]]:
    app = Flask(__name__)
    dispatched: list[str] = []
    rules = [Rule(rate, "POST " + path, name=name) for path, name in VIEWS.items()]
    RateLimiter(app, default="1000/minute", rules=rules, backend=MemoryBackend())

    @app.post("/login")
    def login() -> str:
        dispatched.append("login")
        return "in"

    @app.post("/auth/login")
    def auth_login() -> str:
        dispatched.append("auth-login")
        return "in"

    @app.route("/ns", methods=["POST"], strict_slashes=False)
    def ns() -> str:
        dispatched.append("ns")
        return "ns"

    @app.route("/dir/", methods=["POST"], strict_slashes=False)
    def dir_() -> str:
        dispatched.append("dir")
        return "dir"

    @app.post("/page/")  # strict: "/page" is redirected to it
    def page() -> str:
        dispatched.append("page")
        return "page"

    @app.get("/<path:anything>")  # GET: a POST elsewhere is a 404, 405 or redirect
    def catch_all(anything: str) -> str:
        dispatched.append("catch-all")
        return "other"

    return app, dispatched


def send(client: Any, method: str, path_info: str, script_name: str = "") -> Any:
    return client.open(
        "/", method=method, environ_overrides={"PATH_INFO": path_info, "SCRIPT_NAME": script_name}
    )


def applied(response: Any) -> set[str]:
    policy = response.headers.get("RateLimit-Policy", "")
    return {part.split(";")[0].strip().strip('"') for part in policy.split(",") if part}


def test_doubled_slash_no_longer_dodges_the_login_limit() -> None:
    # The report: POST //login x7 under Rule("5/minute", "POST /login").
    app, dispatched = make_app("5/minute")
    c = app.test_client()
    statuses = [send(c, "POST", "//login").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    assert dispatched == ["login"] * 5
    # and the plain path shares the same counter
    assert send(c, "POST", "/login").status_code == 429


@pytest.mark.parametrize(
    ("path_info", "script", "expected"),
    [
        ("/login", "", "/login"),
        ("//login", "", "/login"),
        ("///login", "/mnt", "/login"),  # the mount point is not part of it
        ("/ns/", "", "/ns"),  # strict_slashes=False: the rule's form
        ("/dir", "", "/dir/"),
        ("/auth//login", "", "/auth//login"),  # a redirect: not routed, as requested
        ("/page", "", "/page"),  # strict_slashes: a redirect to /page/
        ("/x/../login", "", "/x/../login"),  # a 404: Werkzeug does not resolve dots
    ],
)
def test_routed_path(path_info: str, script: str, expected: str) -> None:
    app, _ = make_app()
    with app.test_request_context(
        "/", method="POST", environ_overrides={"PATH_INFO": path_info, "SCRIPT_NAME": script}
    ) as ctx:
        ctx.match_request()
        assert routed_path(request) == expected


# -- property: a rule on "POST <path>" applies exactly when Flask runs that path's view ----

_segment = st.sampled_from(
    [
        "login",
        "auth",
        "ns",
        "dir",
        "x",
        ".",
        "..",
        "",
        "LOGIN",
        "log%69n",
        "%6C%6F%67%69%6E",
        "login%2F",
        "%2Flogin",
        "é",
    ]
)


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    """A request path as a client may send it (percent-escapes and all)."""
    base = draw(st.sampled_from(["/login", *VIEWS, "/other", "/"]))
    segments = base.strip("/").split("/")
    out = []
    for seg in segments:
        if draw(st.integers(0, 3)) == 0:  # now and then, an extra segment before it
            out.append(draw(_segment))
        if seg and draw(st.booleans()):  # percent-encode some of its letters
            seg = "".join(f"%{ord(ch):02X}" if draw(st.booleans()) else ch for ch in seg)
        out.append(seg)
    path = draw(st.sampled_from(["/", "//", "///", "/%2F"])) + "/".join(out)
    path = path.replace("/", draw(st.sampled_from(["/", "/", "//"])), draw(st.integers(0, 3)))
    if base.endswith("/") and base != "/" and draw(st.booleans()):
        path += "/"
    return path + draw(st.sampled_from(["", "", "/", "//", "/."]))


def as_wsgi(raw: str) -> str:
    """What a WSGI server puts in PATH_INFO: percent-decoded bytes, as latin-1 text."""
    return unquote_to_bytes(raw.encode("utf-8")).decode("latin-1")


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    raw=raw_paths(),
    method=st.sampled_from(["POST", "POST", "GET"]),
    script=st.sampled_from(["", "/mnt", "/a/b"]),
)
def test_rule_applies_exactly_when_flask_dispatches(raw: str, method: str, script: str) -> None:
    app, dispatched = make_app()
    r = send(app.test_client(), method, as_wsgi(raw), script)
    names = applied(r)
    view = dispatched[0] if dispatched else None
    for name in VIEWS.values():
        assert (name in names) == (view == name), (raw, method, script, r.status_code, names)
    # a request no rule matched spends the default: unrouted ones included
    assert names == ({view} if view in VIEWS.values() else {"default"})
