"""The Django middleware: one class for sync and async stacks.

Rules and exemptions match ``request.path_info``: the path Django's URL resolver
dispatches on (percent-decoded by the server, without ``SCRIPT_NAME`` /
``FORCE_SCRIPT_NAME``, and not normalised any further, as Django does not). The check
runs in ``__call__``, before the rest of the stack, so every request counts, including
those no URL matches (404s, ``APPEND_SLASH`` redirects) and those a later middleware
answers itself. The view is found with Django's resolver (``routes.py``), so the
limits it carries (``@ratelimit``) join the path rules in one round trip, and a view
marked ``@ratelimit_exempt`` is never limited. Under ASGI the middleware and the
backend call are async (no thread hop); under WSGI all sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]

from ..ratelimit.core import Outcome, RateLimitPolicy
from ..ratelimit.drivers import check_async, check_sync, settle_async, settle_sync
from ..ratelimit.headers import Denial
from ..ratelimit.keys import user as user_key
from ..ratelimit.request import WSGIRequest
from ..ratelimit.shaping import Pending
from .conf import build_policy
from .routes import route_marks

__all__ = ["DjangoRequest", "RateLimitMiddleware"]


class DjangoRequest(WSGIRequest):
    """``request.META`` plus Django's user and session."""

    __slots__ = ("request",)

    def __init__(self, request: HttpRequest, user: Any = None) -> None:
        super().__init__(request.META, user=user, session=getattr(request, "session", None))
        self.request = request

    @property
    def path(self) -> str:
        """``request.path_info``: the path rules match (what Django routes on)."""
        return str(self.request.path_info)

    @property
    def user(self) -> Any:
        if self._user is not None:
            return self._user
        return getattr(self.request, "user", None)


class RateLimitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], Any], policy: RateLimitPolicy | None = None
    ) -> None:
        self.get_response = get_response
        self.policy = policy if policy is not None else build_policy()
        self.is_async = iscoroutinefunction(get_response)
        # The policy's key functions that read the user: under ASGI the user is
        # loaded with ``auser()`` first, since ``request.user`` would query the
        # database from the event loop.
        self._needs_user = any(isinstance(f, user_key) for f in self.policy.key_functions) or any(
            isinstance(r.key, user_key) for r in self.policy.rules
        )
        if self.is_async:
            markcoroutinefunction(self)
        elif self.policy.has_async_keys():
            from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

            raise ImproperlyConfigured("async key functions need an ASGI (async) Django stack")

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        rules = self.rules_for(request)
        if rules is None:
            return self.get_response(request)
        outcome = check_sync(self.policy, DjangoRequest(request), rules)
        if not outcome.allowed:
            return _add_headers(outcome, _denied(outcome))
        if outcome.held is None:
            response = _add_headers(outcome, self.get_response(request))
        else:
            held, leases = outcome.held, self.policy.leases
            try:
                response = self.get_response(request)
            except BaseException:
                leases.release(held)
                raise
            if getattr(response, "streaming", False):  # held until the server closes it
                response = _release_on_close(response, lambda: leases.release(held))
            else:
                leases.release(held)
            response = _add_headers(outcome, response)
        if outcome.pending is not None:
            _settle_after(self.policy, outcome.pending, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        rules = self.rules_for(request)
        if rules is None:
            return await self.get_response(request)
        user = None
        if self._needs_user or any(isinstance(r.key, user_key) for r in rules):
            auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)
            if auser is not None:
                try:
                    user = await auser()
                except Exception:
                    user = None
        outcome = await check_async(self.policy, DjangoRequest(request, user), rules)
        if not outcome.allowed:
            return _add_headers(outcome, _denied(outcome))
        if outcome.held is None:
            response = _add_headers(outcome, await self.get_response(request))
        else:
            held, leases = outcome.held, self.policy.leases
            try:
                response = await self.get_response(request)
            except BaseException:
                await leases.arelease(held)
                raise
            if getattr(response, "streaming", False):  # Django's ASGI handler closes it
                response = _release_on_close(response, lambda: leases.release(held))
            else:
                await leases.arelease(held)
            response = _add_headers(outcome, response)
        if outcome.pending is not None:
            await _asettle_after(self.policy, outcome.pending, response)
        return response

    def rules_for(self, request: HttpRequest) -> Any:
        """The rules that apply to ``request`` (None: exempt, or nothing applies)."""
        exempt, extra = route_marks(request)
        if exempt:
            return None
        return self.policy.match(request.method or "GET", request.path_info, extra)


def _denied(outcome: Outcome) -> HttpResponse:
    denial = outcome.denial
    if isinstance(denial, Denial):
        response = HttpResponse(denial.body, status=denial.status)
        for name, value in denial.headers:
            response[name] = value
        return response
    return denial  # a custom deny gave a Django response


def _add_headers(outcome: Outcome, response: HttpResponse) -> HttpResponse:
    for name, value in outcome.headers:
        if name not in response:
            response[name] = value
    return response


def _answer(response: HttpResponse) -> tuple[int, list[tuple[str, str]]]:
    return response.status_code, [(n.lower(), v) for n, v in response.headers.items()]


def _settle_after(policy: RateLimitPolicy, pending: Pending, response: HttpResponse) -> None:
    """A ``settle=`` rule's settlement: now for a rendered response, after the last
    chunk for a streamed one."""
    status, headers = _answer(response)
    if not getattr(response, "streaming", False):
        settle_sync(policy, pending, status, headers)
        return
    content = response.streaming_content

    def then() -> Iterator[Any]:
        yield from content
        settle_sync(policy, pending, status, headers)

    response.streaming_content = then()


async def _asettle_after(policy: RateLimitPolicy, pending: Pending, response: HttpResponse) -> None:
    status, headers = _answer(response)
    if not getattr(response, "streaming", False):
        await settle_async(policy, pending, status, headers)
        return
    if not getattr(response, "is_async", False):
        _settle_after(policy, pending, response)  # Django iterates it in a thread
        return
    content = response.streaming_content

    async def then() -> AsyncIterator[Any]:
        async for chunk in content:
            yield chunk
        await settle_async(policy, pending, status, headers)

    response.streaming_content = then()


def _release_on_close(response: Any, release: Callable[[], None]) -> Any:
    """``response``, calling ``release`` after its own ``close()`` (which the WSGI server
    calls once the streamed body is sent, or the client went away)."""
    close = response.close

    def closing() -> None:
        try:
            close()
        finally:
            release()

    response.close = closing
    return response
