"""The Django middleware: one class for sync and async stacks.

The check runs in ``process_view``, after URL resolution, so the path rules and
the limits a view carries (``@ratelimit``) are checked together in one round
trip; a view marked ``@ratelimit_exempt`` is never limited. Under ASGI the
middleware, its ``process_view`` and the backend call are all async (no thread
hop); under WSGI all sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]

from ..ratelimit import views
from ..ratelimit.core import Outcome, RateLimitPolicy
from ..ratelimit.drivers import check_async, check_sync
from ..ratelimit.headers import Denial
from ..ratelimit.keys import user as user_key
from ..ratelimit.request import WSGIRequest
from .conf import build_policy

__all__ = ["DjangoRequest", "RateLimitMiddleware"]

_ATTR = "_gatekeep_outcome"


class DjangoRequest(WSGIRequest):
    """``request.META`` plus Django's user and session."""

    __slots__ = ("request",)

    def __init__(self, request: HttpRequest, user: Any = None) -> None:
        super().__init__(request.META, user=user, session=getattr(request, "session", None))
        self.request = request

    @property
    def path(self) -> str:
        return str(self.request.path)

    @property
    def user(self) -> Any:
        if self._user is not None:
            return self._user
        return getattr(self.request, "user", None)


class RateLimitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any],
                 policy: RateLimitPolicy | None = None) -> None:
        self.get_response = get_response
        self.policy = policy if policy is not None else build_policy()
        self.is_async = iscoroutinefunction(get_response)
        # The policy's key functions that read the user: under ASGI the user is
        # loaded with ``auser()`` first, since ``request.user`` would query the
        # database from the event loop.
        self._needs_user = any(isinstance(f, user_key) for f in self.policy.key_functions) or \
            any(isinstance(r.key, user_key) for r in self.policy.rules)
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view  # type: ignore[method-assign]
        elif self.policy.has_async_keys():
            from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
            raise ImproperlyConfigured("async key functions need an ASGI (async) Django stack")

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return _add_headers(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        return _add_headers(request, response)

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any,
                     view_kwargs: Any) -> HttpResponse | None:
        rules = self._rules(request, view_func)
        if rules is None:
            return None
        outcome = check_sync(self.policy, DjangoRequest(request), rules)
        return _respond(request, outcome)

    async def _aprocess_view(self, request: HttpRequest, view_func: Any, view_args: Any,
                             view_kwargs: Any) -> HttpResponse | None:
        rules = self._rules(request, view_func)
        if rules is None:
            return None
        user = None
        if self._needs_user or any(isinstance(r.key, user_key) for r in rules):
            auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)
            if auser is not None:
                try:
                    user = await auser()
                except Exception:
                    user = None
        outcome = await check_async(self.policy, DjangoRequest(request, user), rules)
        return _respond(request, outcome)

    def _rules(self, request: HttpRequest, view_func: Any) -> Any:
        if views.view_exempt(view_func):
            return None
        return self.policy.match(request.method or "GET", request.path,
                                 views.view_rules(view_func))


def _respond(request: HttpRequest, outcome: Outcome) -> HttpResponse | None:
    setattr(request, _ATTR, outcome)
    if outcome.allowed:
        return None
    denial = outcome.denial
    if isinstance(denial, Denial):
        response = HttpResponse(denial.body, status=denial.status)
        for name, value in denial.headers:
            response[name] = value
        return response
    return denial  # a custom deny gave a Django response


def _add_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    outcome: Outcome | None = getattr(request, _ATTR, None)
    if outcome is not None:
        for name, value in outcome.headers:
            if name not in response:
                response[name] = value
    return response
