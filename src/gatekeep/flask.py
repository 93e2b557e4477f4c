"""Flask: an extension with ``init_app``, per-view limits and exemptions.

>>> limiter = RateLimiter(default="100/minute")
>>> limiter.init_app(app)                       # or RateLimiter(app, ...)
>>> @app.post("/login")
... @limiter.limit("5/minute")
... def login(): ...
>>> @app.get("/health")
... @limiter.exempt
... def health(): ...

Options come from the constructor and from ``app.config["GATEKEEP_RATELIMIT"]``
(a dict of the same keywords; the constructor wins). The check runs in
``before_request``, after routing, so the path rules and the limits of the
view are checked together, in one round trip; headers are added in
``after_request``. The order of precedence is the middleware's: exempt views
and paths first, then every matching rule (view limits included), then the
default limits when no rule matched.

Path rules (and ``exempt`` paths) are matched against the path Flask routes,
relative to the app like its URL rules (``SCRIPT_NAME``, the mount point, is not
part of it), so a rule names the same path as ``@app.post(...)``:

- a routed request (the view will run) is matched with the path Werkzeug
  matched: leading slashes collapsed as Werkzeug collapses them (``//login``
  reaches ``/login``), percent-escapes decoded by the WSGI server, and with
  ``strict_slashes=False`` the trailing slash of the URL rule (``/login/``
  reaching the rule ``/login`` counts as ``/login``);
- a request the router did not send to a view (404, 405, a redirect such as the
  one Werkzeug answers for ``/a//b``) is matched with ``request.path``: it spends
  the ``default`` limits and any path rule it matches.

So no spelling of a URL that Flask dispatches to a view dodges the rules on that
view's path, and a spelling it does not dispatch there (``/auth//login``,
redirected) is not counted as that path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Request, Response, current_app, g, request, session

from .blocks import BlockSpec
from .limiter import Limits
from .ratelimit import views
from .ratelimit.core import RateLimitPolicy
from .ratelimit.drivers import check_sync, settle_sync
from .ratelimit.headers import Denial
from .ratelimit.keys import KeyFunc
from .ratelimit.request import WSGIRequest

__all__ = ["RateLimiter", "routed_path"]

F = TypeVar("F", bound=Callable[..., Any])

_EXT = "gatekeep.ratelimit"


class RateLimiter:
    """The Flask extension. ``user``: a callable returning the current user, for
    :func:`gatekeep.ratelimit.user` keys (e.g. ``lambda: flask_login.current_user``)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        policy: RateLimitPolicy | None = None,
        user: Callable[[], Any] | None = None,
        **options: Any,
    ) -> None:
        if policy is not None and options:
            raise TypeError("pass either policy= or the policy's options, not both")
        self._policy = policy
        self._options = options
        self._user = user
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the policy (raising on bad configuration) and register the hooks."""
        if self._policy is not None:
            policy = self._policy
        else:
            options = {**app.config.get("GATEKEEP_RATELIMIT", {}), **self._options}
            policy = RateLimitPolicy(**options)
        if policy.has_async_keys():
            raise TypeError("Flask runs key functions synchronously; make them plain functions")
        app.extensions[_EXT] = policy
        app.before_request(self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)

    @property
    def policy(self) -> RateLimitPolicy:
        """The current app's policy."""
        return current_app.extensions[_EXT]  # type: ignore[no-any-return]

    def limit(
        self,
        limits: Limits,
        *,
        key: KeyFunc | None = None,
        name: str | None = None,
        block: BlockSpec = None,
    ) -> Callable[[F], F]:
        """Limits for one view, checked with the path rules that match it (``block``: a
        penalty block after a denial, see :mod:`gatekeep.blocks`)."""
        return views.limit(limits, key=key, name=name, block=block)

    def exempt(self, view: F) -> F:
        """Never limit this view (no headers either)."""
        return views.exempt(view)

    def _before(self) -> Response | None:
        policy: RateLimitPolicy = current_app.extensions[_EXT]
        view = current_app.view_functions.get(request.endpoint or "")
        if views.view_exempt(view):
            return None
        extra = views.view_rules(view)
        environ = request.environ
        req = WSGIRequest(environ, user=self._user() if self._user else None, session=session)
        rules = policy.match(req.method, routed_path(request), extra)
        if rules is None:
            return None
        outcome = check_sync(policy, req, rules)
        g._gatekeep_headers = outcome.headers
        if outcome.pending is not None:  # a settle= rule: after the response is sent
            g._gatekeep_pending = outcome.pending
        if outcome.held is not None:  # a concurrency slot: released when the response closes
            g._gatekeep_held = outcome.held
        if outcome.allowed:
            return None
        denial = outcome.denial
        if isinstance(denial, Denial):
            return Response(denial.body, status=denial.status, headers=list(denial.headers))
        return current_app.make_response(denial)

    def _after(self, response: Response) -> Response:
        for name, value in g.pop("_gatekeep_headers", ()):
            if name not in response.headers:
                response.headers[name] = value
        pending = g.pop("_gatekeep_pending", None)
        if pending is not None:
            policy: RateLimitPolicy = current_app.extensions[_EXT]
            status = response.status_code
            headers = [(n.lower(), v) for n, v in response.headers.items()]
            # Werkzeug calls it when the server closes the response: its body sent
            response.call_on_close(lambda: settle_sync(policy, pending, status, headers))
        held = g.pop("_gatekeep_held", None)
        if held is not None:  # after the body is sent (streamed too), or the client left
            leases = current_app.extensions[_EXT].leases
            response.call_on_close(lambda: leases.release(held))
        return response

    @staticmethod
    def _teardown(exc: BaseException | None) -> None:
        held = g.pop("_gatekeep_held", None)
        if held is not None:  # no response took it (an unhandled error)
            current_app.extensions[_EXT].leases.release(held)


def routed_path(req: Request) -> str:
    """The path Flask's router matched for ``req``, as path rules see it (see above)."""
    # request.path is "/" + PATH_INFO.lstrip("/"), decoded as Werkzeug decodes it: the
    # very string its MapAdapter matched when the rule was found on the first try.
    path = req.path
    rule = req.url_rule
    if rule is not None and req.routing_exception is None and not rule.strict_slashes:
        # A non-strict rule also takes the URL without its trailing slash, or with
        # one or more ("/dir//" reaches "/dir/"): count it as the rule's own form.
        path = path.rstrip("/") + "/" if rule.rule.endswith("/") else path.rstrip("/") or "/"
    return path
