"""Django's middleware matches rules on the path Django routes: ``request.path_info``
(without SCRIPT_NAME), every request counted, 404s included. A property test over
generated paths (doubled slashes, dot segments, percent-encoding, case, trailing
slashes, non-ASCII, a SCRIPT_NAME prefix): the rule on the login route applies exactly
when Django dispatches the request to the login view."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import unquote_to_bytes

import pytest
from django.conf.urls.i18n import i18n_patterns
from django.core.checks import run_checks
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path, re_path
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeep.django.decorators import ratelimit, ratelimit_exempt
from gatekeep.django.middleware import RateLimitMiddleware

MW = "gatekeep.django.middleware.RateLimitMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
#: Views record the requests dispatched to them (a HEAD response has no body to read).
calls: list[str] = []


def login(request: HttpRequest) -> HttpResponse:
    calls.append("login")
    return HttpResponse("login")


def other(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    calls.append("other")
    return HttpResponse("other")


@ratelimit("1000000/minute", name="limited-view")
def limited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("limited")


@ratelimit_exempt
def free(request: HttpRequest) -> HttpResponse:
    return HttpResponse("free")


class NoSlash:
    """``/login`` (no trailing slash), beside routes that look like it."""

    urlpatterns: ClassVar = [
        path("", other),
        path("login", login),
        path("login/extra", other),
        path("Login", other),
        path("api/<str:item>/", other),
        re_path(r"^files/(?P<rest>.*)$", other),
        path("limited/", limited),
        path("free/", free),
    ]


class Slash:
    """``/login/``, served with CommonMiddleware and APPEND_SLASH."""

    urlpatterns: ClassVar = [
        path("", other),
        path("login/", login),
        path("login/extra/", other),
        path("api/<str:item>/", other),
    ]


def gatekeep(rule: str, **extra: Any) -> dict[str, Any]:
    return {
        "ratelimit": {
            "default": "1000000/minute",
            **extra,
            "rules": [{"limits": "1000000/minute", "path": rule, "name": "login"}],
        }
    }


def applied(response: Any) -> set[str]:
    """The names of the rules that counted this request (RateLimit-Policy)."""
    policy = response.get("RateLimit-Policy", "")
    return {item.split(";")[0].strip().strip('"') for item in policy.split(",") if item}


#: The names of the rules the middleware checked, request by request.
checked: list[set[str]] = []


@pytest.fixture(autouse=True)
def record_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record what the middleware checks: an outer middleware (CommonMiddleware's
    APPEND_SLASH redirect) may replace the response and its RateLimit headers."""
    rules_for = RateLimitMiddleware.rules_for

    def recording(self: RateLimitMiddleware, request: HttpRequest) -> Any:
        rules = rules_for(self, request)
        checked.append({r.name for r in rules or ()})
        return rules

    monkeypatch.setattr(RateLimitMiddleware, "rules_for", recording)


@pytest.fixture
def no_slash() -> Iterator[Client]:
    with override_settings(ROOT_URLCONF=NoSlash, MIDDLEWARE=[MW], GATEKEEP=gatekeep("POST /login")):
        yield Client()


@pytest.fixture
def slash() -> Iterator[Client]:
    with override_settings(
        ROOT_URLCONF=Slash,
        MIDDLEWARE=[COMMON, MW],
        APPEND_SLASH=True,
        GATEKEEP=gatekeep("POST /login/"),
    ):
        yield Client()


# -- generated paths -----------------------------------------------------------------------

SEGMENTS = st.sampled_from(
    [
        "login",
        "Login",
        "LOGIN",
        "login ",
        "log%69n",
        "%6cogin",
        "login%2F",
        "login%00",
        "lo%2567in",
        "l%C3%B6gin",
        "lögin",
        "",
        ".",
        "..",
        "%2e",
        "extra",
        "api",
        "files",
        "x",
        "%20",
        "login;x",
        "login.",
        "limited",
        "free",
    ]
)
PREFIXES = st.sampled_from(["", "/app", "/app/", "/login", "/a%20b"])


LOGIN = st.sampled_from(
    [
        "login",
        "login",
        "log%69n",
        "%6cogin",
        "%6C%6F%67%69%6E",
        "Login",
        "login%2F",
        "login%2f",
        "logi",
        "loginn",
        "login.",
        "login%00",
    ]
)


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    """Half near the login route (its encodings and near misses), half anything."""
    if draw(st.booleans()):
        lead = draw(st.sampled_from(["/"] * 6 + ["//", "/./", "/../", "/x/../", "/%2F"]))
        trail = draw(
            st.sampled_from(
                ["", "", "", "/", "/", "/", "?a=1", "//", "/.", "?", "%20", ";", "%3F", "/extra"]
            )
        )
        return lead + draw(LOGIN) + trail
    segments = draw(st.lists(SEGMENTS, min_size=0, max_size=4))
    lead = draw(st.sampled_from(["/", "//", "/./", "/../"]))
    trail = draw(st.sampled_from(["", "", "/", "//", "/.", "?", "?a=1"]))
    return lead + "/".join(segments) + trail


def environ(method: str, raw: str, prefix: str) -> dict[str, str]:
    """What a WSGI server hands Django for a request line ``METHOD raw``: PATH_INFO
    percent-decoded, its bytes as latin-1 characters (PEP 3333), the query apart."""
    path_part, _, query = raw.partition("?")
    return {
        "PATH_INFO": unquote_to_bytes(path_part).decode("latin-1"),
        "SCRIPT_NAME": unquote_to_bytes(prefix).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
    }


METHODS = st.sampled_from(["POST", "POST", "GET", "HEAD", "PUT", "DELETE"])
CHECK = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def dispatch(client: Client, method: str, raw: str, prefix: str) -> tuple[set[str], list[str]]:
    """The rules checked for one request, and the views it reached."""
    calls.clear()
    checked.clear()
    response = client.generic(method, "/", **environ(method, raw, prefix))
    assert response.status_code in (200, 301, 404), (raw, prefix, response.status_code)
    assert len(checked) == 1
    if response.status_code != 301:  # the headers say the same
        assert applied(response) == checked[0]
    return checked[0], list(calls)


@CHECK
@given(method=METHODS, raw=raw_paths(), prefix=PREFIXES)
@example(method="POST", raw="/login", prefix="")
@example(method="POST", raw="/log%69n?a=1", prefix="/app")
@example(method="POST", raw="//login", prefix="")
@example(method="POST", raw="/./login", prefix="")
@example(method="POST", raw="/login/", prefix="/login")
@example(method="GET", raw="/login", prefix="")
def test_rule_applies_exactly_when_django_routes_to_the_view(
    no_slash: Client, method: str, raw: str, prefix: str
) -> None:
    rules, views = dispatch(no_slash, method, raw, prefix)
    assert ("login" in rules) == (method == "POST" and views == ["login"]), (raw, prefix)
    # every request is counted: by the rule, or else by the default
    assert rules in ({"login"}, {"default"}) or "limited-view" in rules or views == []


@CHECK
@given(method=METHODS, raw=raw_paths(), prefix=PREFIXES)
@example(method="POST", raw="/login/", prefix="")
@example(method="POST", raw="/login", prefix="")
@example(method="POST", raw="/%6cogin/", prefix="/app")
@example(method="POST", raw="/login//", prefix="")
def test_rule_applies_exactly_when_django_routes_to_the_view_append_slash(
    slash: Client, method: str, raw: str, prefix: str
) -> None:
    rules, views = dispatch(slash, method, raw, prefix)
    assert ("login" in rules) == (method == "POST" and views == ["login"]), (raw, prefix)
    assert rules in ({"login"}, {"default"})


# -- the cases by name -------------------------------------------------------------------------


def test_script_name_is_not_part_of_the_matched_path(no_slash: Client) -> None:
    r = no_slash.post("/", PATH_INFO="/login", SCRIPT_NAME="/app")
    assert r.wsgi_request.path == "/app/login" and applied(r) == {"login"}
    # a SCRIPT_NAME that looks like the route does not make another path match
    r = no_slash.post("/", PATH_INFO="/", SCRIPT_NAME="/login")
    assert applied(r) == {"default"} and r.content == b"other"


def test_percent_encoded_path_is_the_decoded_route(no_slash: Client) -> None:
    r = no_slash.post("/log%69n")  # the server decodes it: Django routes /login
    assert r.content == b"login" and applied(r) == {"login"}
    r = no_slash.post("/lo%2567in")  # /lo%67in after decoding: not the login route
    assert r.status_code == 404 and applied(r) == {"default"}


def test_append_slash_redirect_is_not_the_login_view(slash: Client) -> None:
    """POST /login with the route at /login/: CommonMiddleware answers 301 (DEBUG off);
    the view never runs, so the login rule does not count it; the default does."""
    calls.clear()
    checked.clear()
    r = slash.post("/login")
    assert r.status_code == 301 and r["Location"] == "/login/" and calls == []
    assert checked == [{"default"}]
    r = slash.post("/login/")
    assert r.status_code == 200 and calls == ["login"] and applied(r) == {"login"}


def test_unresolved_urls_count(no_slash: Client) -> None:
    section = {
        "ratelimit": {
            "default": "3/minute",
            "rules": [{"limits": "2/minute", "path": "/api/**", "name": "api"}],
        }
    }
    with override_settings(GATEKEEP=section):
        c = Client()
        assert [c.get("/nowhere/").status_code for _ in range(4)] == [404, 404, 404, 429]
        # a path rule counts a path no route serves, under the rule
        statuses = [c.get("/api/a/b/c").status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        assert c.get("/api/a/b/c")["RateLimit-Policy"] == '"api";q=2;w=60'


async def test_unresolved_urls_count_async(no_slash: Client) -> None:
    with override_settings(GATEKEEP={"ratelimit": {"default": "2/minute"}}):
        c = AsyncClient()
        statuses = [(await c.get("/nowhere/")).status_code for _ in range(3)]
        assert statuses == [404, 404, 429]


def test_view_marks_found_before_the_view_runs(no_slash: Client) -> None:
    r = no_slash.get("/limited/")
    assert applied(r) == {"limited-view"}  # the view's limit replaces the default
    r = no_slash.get("/free/")
    assert r.status_code == 200 and not r.has_header("RateLimit-Policy")
    r = no_slash.get("/free")  # no route: not the exempt view, so counted
    assert r.status_code == 404 and applied(r) == {"default"}


def test_later_middleware_answering_is_counted(no_slash: Client) -> None:
    """A middleware after this one that answers itself (here: every request) does not
    escape the limit."""
    with override_settings(
        MIDDLEWARE=[MW, f"{__name__}.Teapot"], GATEKEEP={"ratelimit": {"default": "2/minute"}}
    ):
        c = Client()
        assert [c.get("/login").status_code for _ in range(3)] == [418, 418, 429]


class Teapot:
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(status=418)


class SetsUrlconf:
    """An earlier middleware that routes the request with another urlconf."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = FreeLogin
        return self.get_response(request)


class FreeLogin:
    urlpatterns: ClassVar = [path("login", free)]


def test_the_request_urlconf_is_the_one_resolved(no_slash: Client) -> None:
    with override_settings(MIDDLEWARE=[f"{__name__}.SetsUrlconf", MW]):
        r = Client().post("/login")
        assert r.content == b"free" and not r.has_header("RateLimit-Policy")


def test_resolved_once_per_path_and_only_when_a_view_is_marked(
    no_slash: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.urls import URLResolver

    resolves: list[str] = []
    resolve = URLResolver.resolve

    def counting(self: URLResolver, path: str) -> Any:
        if self.pattern.regex.pattern == "^/":  # the root resolver (Django's, or ours)
            resolves.append(path)
        return resolve(self, path)

    monkeypatch.setattr(URLResolver, "resolve", counting)
    # NoSlash has marked views: the first request on a path resolves it for the marks
    # (then Django resolves it to dispatch); later requests on that path only Django
    for _ in range(3):
        no_slash.get("/files/a")
    assert resolves == ["/files/a"] * 4
    # Slash marks no view: the middleware never resolves
    resolves.clear()
    with override_settings(ROOT_URLCONF=Slash, GATEKEEP=gatekeep("POST /login/")):
        c = Client()
        for _ in range(3):
            assert c.post("/login/").status_code == 200
        assert resolves == ["/login/"] * 3


class I18n:
    urlpatterns: ClassVar = i18n_patterns(path("limited/", limited), path("free/", free))


@pytest.mark.parametrize("language", ["en", "fr"])
def test_i18n_patterns_after_locale_middleware(language: str) -> None:
    locale = "django.middleware.locale.LocaleMiddleware"
    with override_settings(
        ROOT_URLCONF=I18n,
        MIDDLEWARE=[locale, MW],
        LANGUAGE_CODE="en",
        LANGUAGES=[("en", "English"), ("fr", "French")],
        GATEKEEP=gatekeep("POST /login"),
    ):
        c = Client()
        assert applied(c.get(f"/{language}/limited/")) == {"limited-view"}
        r = c.get(f"/{language}/free/")
        assert r.content == b"free" and not r.has_header("RateLimit-Policy")
        assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == []
        # the other order: the URL's language is not active when the marks are looked up
        with override_settings(MIDDLEWARE=[MW, locale]):
            assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == ["gatekeep.W002"]
    with override_settings(
        ROOT_URLCONF=NoSlash, MIDDLEWARE=[MW, locale], GATEKEEP=gatekeep("POST /login")
    ):
        assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == []


def test_check_rule_path_that_misses_the_route_by_a_slash() -> None:
    with override_settings(ROOT_URLCONF=Slash, MIDDLEWARE=[MW], GATEKEEP=gatekeep("POST /login")):
        messages = [m for m in run_checks() if m.id.startswith("gatekeep")]
        assert [m.id for m in messages] == ["gatekeep.W003"]
        assert "'/login/'" in messages[0].hint
    with override_settings(
        ROOT_URLCONF=NoSlash, MIDDLEWARE=[MW], GATEKEEP=gatekeep("POST /login/")
    ):
        assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == ["gatekeep.W003"]
    for urls, rule in [
        (Slash, "POST /login/"),
        (NoSlash, "POST /login"),
        (NoSlash, "/nowhere"),
        (Slash, "/api/**"),
    ]:
        with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=[MW], GATEKEEP=gatekeep(rule)):
            assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == []
