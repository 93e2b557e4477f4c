"""A rule's path means the path the framework routes: a rule applies exactly when
Starlette dispatches to the endpoint it names, whatever the request path looks like."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import unquote

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.ratelimit.routes import route_name, route_path

RAN: list[str] = []


def run(coro: Any) -> Any:
    """``coro`` on a loop of its own, leaving the thread's current loop alone: asyncio.run
    replaces it, and pytest-asyncio before 1.0 leaves a fresh loop there after each async
    test, which would then be dropped unclosed (a ResourceWarning in a later test)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def endpoint(name: str) -> Any:
    async def run(request: Request) -> PlainTextResponse:
        RAN.append(name)
        return PlainTextResponse(name)

    return run


inner = Starlette(routes=[Route("/login", endpoint("api-login"), methods=["POST"])])
APP = Starlette(
    routes=[
        Route("/login", endpoint("login"), methods=["POST"]),
        Route("/login/{step}", endpoint("login-step"), methods=["POST"]),
        Route("/items/{item}", endpoint("item"), methods=["GET"]),
        Mount(
            "/sub",
            routes=[
                Route("/login", endpoint("sub-login"), methods=["POST"]),
                Route("/", endpoint("sub-home")),
            ],
        ),
        Mount("/api", app=inner),
        Route("/{page}", endpoint("page"), methods=["GET", "POST"]),
    ]
)
#: (rule, the endpoint it names): the rule must apply exactly when that endpoint runs.
RULES = [
    ("POST /login", "login"),
    ("POST /sub/login", "sub-login"),
    ("POST /api/login", "api-login"),
    ("GET /items/{item}", "item"),
    ("POST /login/*", "login-step"),
]


def _fastapi_app() -> Any:
    """The same app in FastAPI: an included router instead of the first Mount."""
    from fastapi import APIRouter, FastAPI

    def recorded(name: str) -> Any:
        async def run() -> PlainTextResponse:
            RAN.append(name)
            return PlainTextResponse(name)

        return run

    app = FastAPI()
    app.post("/login")(recorded("login"))
    app.post("/login/{step}")(recorded("login-step"))
    app.get("/items/{item}")(recorded("item"))
    sub = APIRouter()
    sub.post("/login")(recorded("sub-login"))
    sub.get("/")(recorded("sub-home"))
    app.include_router(sub, prefix="/sub")
    app.mount("/api", inner)
    app.api_route("/{page}", methods=["GET", "POST"])(recorded("page"))
    return app


def _middleware(app: Any) -> RateLimitMiddleware:
    return RateLimitMiddleware(
        app,
        rules=[
            Rule("1000000/minute", pattern, name=f"r{i}") for i, (pattern, _) in enumerate(RULES)
        ],
    )


MIDDLEWARES = {"starlette": _middleware(APP), "fastapi": _middleware(_fastapi_app())}

# A request line's path: one of the app's paths, then mutated the ways paths differ
# from their route: doubled slashes, dot segments, percent escapes (a server decodes
# them into scope["path"]), trailing slashes, newlines, case.
_BASES = st.sampled_from(
    [
        "/login",
        "/sub/login",
        "/api/login",
        "/items/1",
        "/login/step",
        "/page",
        "/sub/",
        "/sub",
        "/",
        "",
    ]
)
_EDITS = st.lists(
    st.tuples(
        st.sampled_from(
            ["//", "/./", "/../", "/x/../", "%0A", "%0a", "%2F", "/", "%20", "%6C", "%25", "ü", "."]
        ),
        st.integers(0, 20),
    ),
    max_size=2,
)
_ROOTS = st.sampled_from(["", "/prefix", "/pre", "/api", "/login"])
_METHODS = st.sampled_from(["POST", "POST", "POST", "GET", "HEAD", "PUT"])


def _mutate(base: str, edits: list[tuple[str, int]], escape: int | None, upper: bool) -> str:
    path = base
    for text, at in edits:
        at = min(at, len(path))
        path = path[:at] + text + path[at:]
    if escape is not None and path:  # percent-encode one character
        i = escape % len(path)
        path = path[:i] + "".join(f"%{b:02X}" for b in path[i].encode()) + path[i + 1 :]
    return path.upper() if upper else path


async def _call(
    method: str, raw: str, root: str, framework: str = "starlette"
) -> tuple[set[str], list[str]]:
    """(the rules that applied, the endpoints that ran) for one request."""
    path = unquote(raw)  # as uvicorn and hypercorn fill scope["path"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "root_path": root,
        "raw_path": raw.encode("ascii", "replace"),
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "client": ("198.51.100.1", 1),
        "server": ("t", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    RAN.clear()
    await MIDDLEWARES[framework](scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    policy = dict(start["headers"]).get(b"ratelimit-policy", b"").decode()
    applied = {name for i, (_, name) in enumerate(RULES) if f'"r{i}"' in policy}
    return applied, list(RAN)


@settings(
    max_examples=int(os.environ.get("GK_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    method=_METHODS,
    root=_ROOTS,
    base=_BASES,
    edits=_EDITS,
    escape=st.one_of(st.none(), st.integers(0, 40)),
    upper=st.integers(0, 9),
    framework=st.sampled_from(sorted(MIDDLEWARES)),
)
def test_a_rule_applies_exactly_when_its_endpoint_runs(
    method: str,
    root: str,
    base: str,
    edits: list[tuple[str, int]],
    escape: int | None,
    upper: int,
    framework: str,
) -> None:
    raw = _mutate(base, edits, escape, upper == 0)
    if not raw.startswith("/"):
        raw = "/" + raw
    # ASGI: the path includes root_path (uvicorn --root-path, hypercorn). A server that
    # strips it is out of spec, and Starlette's mounts do not route its requests.
    raw = root + raw
    applied, ran = run(_call(method, raw, root, framework))
    assert len(ran) <= 1
    event(f"{framework} endpoint: {ran[0] if ran else None}")  # --hypothesis-show-statistics
    expected = set(ran) & {name for _, name in RULES}
    if framework == "fastapi" and method == "HEAD":
        # A GET rule covers HEAD (Starlette serves HEAD with the GET endpoint); FastAPI
        # answers HEAD on a GET route with 405, and the HEAD still counts as a GET.
        assert expected <= applied <= expected | {"item"}, (method, root, raw, ran)
    else:
        assert applied == expected, (method, root, raw, ran)


def test_known_paths() -> None:
    """The cases the property is about, spelled out."""
    cases = [
        ("POST", "/login", "", {"login"}),
        ("POST", "/%6Cogin", "", {"login"}),  # decoded by the server
        ("POST", "/login%0A", "", {"login"}),  # Starlette's "$" takes a final newline
        ("POST", "/login/%0A", "", {"login-step"}),  # ... and "{step}" can be that newline
        ("POST", "/login/", "", set()),  # redirected, the endpoint does not run
        ("POST", "//login", "", set()),
        ("POST", "/a/../login", "", set()),  # servers do not resolve dot segments
        ("POST", "/prefix/login", "/prefix", {"login"}),  # behind --root-path
        ("POST", "/login", "/prefix", {"login"}),  # a server that left root_path in place
        ("POST", "/sub/login", "", {"sub-login"}),  # a Mount's routes keep its prefix
        ("POST", "/api/login", "", {"api-login"}),  # a mounted app
        ("GET", "/login", "", set()),  # 405: the endpoint does not run
        ("GET", "/items/1", "", {"item"}),
    ]
    for framework in MIDDLEWARES:
        for method, raw, root, expected in cases:
            applied, ran = run(_call(method, raw, root, framework))
            assert applied == expected == set(ran) & {n for _, n in RULES}, (
                framework,
                method,
                raw,
                root,
            )
    # HEAD is GET for a rule: Starlette runs the GET endpoint, FastAPI answers 405
    assert run(_call("HEAD", "/items/1", "", "starlette")) == ({"item"}, ["item"])
    assert run(_call("HEAD", "/items/1", "", "fastapi")) == ({"item"}, [])


def test_route_path_strips_root_path_at_a_segment_boundary() -> None:
    def rp(path: str, root: str = "") -> str:
        return route_path({"path": path, "root_path": root})

    assert rp("/api/login", "/api") == "/login"
    assert rp("/apilogin", "/api") == "/apilogin"
    assert rp("/api", "/api") == ""
    assert rp("/login", "/api") == "/login"
    assert rp("/login\n") == "/login\n"  # both readings are matched: match_routed


def test_match_routed_reads_a_final_newline_both_ways() -> None:
    from gatekeep.ratelimit.core import RateLimitPolicy

    exact, step = Rule("5/minute", "POST /login"), Rule("5/minute", "POST /login/*")
    policy = RateLimitPolicy([exact, step])
    assert policy.match_routed("POST", "/login\n") == (exact,)
    assert policy.match_routed("POST", "/login/\n") == (step,)
    assert policy.match("POST", "/login/\n") == (step,)
    assert policy.match_routed("POST", "/other\n") is None


def test_route_names_never_collide() -> None:
    base = "GET /" + "x" * 70
    alpha, beta = route_name(base + "/alpha"), route_name(base + "/beta")
    assert alpha != beta and len(alpha) <= 64 and len(beta) <= 64
    assert route_name("GET /items/{id}") == "GET /items/{id}"  # short ones stay readable
    assert route_name("GET /é") != route_name("GET /ü")  # non-ASCII: a digest too
    # a literal name cannot look like a digested one: '#' is digested itself
    assert route_name(route_name(base + "/alpha")) != route_name(base + "/alpha")


async def test_unrouted_requests_count_against_default_and_path_rules() -> None:
    app = RateLimitMiddleware(
        APP, default="2/minute", rules=[Rule("1/minute", "/nothing/**", name="nothing")]
    )
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert [(await c.get("/no/such/page")).status_code for _ in range(3)] == [404, 404, 429]
        r = await c.get("/nothing/here")
        assert r.status_code == 404 and r.headers["ratelimit-policy"] == '"nothing";q=1;w=60'
        assert (await c.get("/nothing/else")).status_code == 429
        # a 405 and a redirect count too, each once
        r = await c.put("/items/1")
        assert r.status_code == 429 and r.headers["ratelimit"].startswith('"default";r=0;')


def test_wsgi_rules_match_the_path_inside_the_app() -> None:
    """Behind WSGI too: SCRIPT_NAME is where the app is mounted, PATH_INFO its route."""
    from gatekeep.ratelimit.wsgi import RateLimitMiddleware as WSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = WSGIMiddleware(app, rules=[Rule("1/minute", "POST /login", name="login")])

    def policy(script: str, path: str) -> str:
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            seen.update(headers)

        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": script,
            "PATH_INFO": path,
            "REMOTE_ADDR": f"198.51.100.{len(script) + len(path)}",
        }
        wsgi(environ, start_response)
        return str(seen.get("RateLimit-Policy", ""))

    assert policy("/app", "/login") == '"login";q=1;w=60'
    assert policy("", "/login") == '"login";q=1;w=60'
    assert policy("/login", "") == ""
    assert policy("", "/app/login") == ""


def test_a_doubled_slash_never_dodges_a_wsgi_rule() -> None:
    """The generic WSGI middleware cannot see the app's routing: it merges runs of
    slashes as Werkzeug routes them, so ``POST //login`` spends the login limit."""
    from gatekeep.ratelimit.wsgi import RateLimitMiddleware as WSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = WSGIMiddleware(app, rules=[Rule("5/minute", "POST /login", name="login")])
    statuses = []
    for path in ["/login", "//login", "///login", "/login", "//login", "//login", "/login"]:
        seen: list[str] = []
        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "REMOTE_ADDR": "198.51.100.7",
        }
        wsgi(environ, lambda status, headers, exc_info=None, seen=seen: seen.append(status))
        statuses.append(int(seen[0].split()[0]))
    assert statuses == [200] * 5 + [429] * 2
