"""Django system checks: rate-limit and session misconfiguration is reported at start-up
(``manage.py check``, ``runserver``, ``migrate``), not at the first request."""

from __future__ import annotations

from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.checks import CheckMessage, Error, Tags, Warning, register  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from ..ratelimit.keys import user as user_key
from .conf import build_policy, build_session_store, ratelimit_settings

__all__ = ["check_ratelimit", "check_sessions"]

ENGINE = "gatekeep.django.sessions"

MIDDLEWARE = "gatekeep.django.middleware.RateLimitMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register(Tags.security, Tags.compatibility)  # type: ignore[untyped-decorator]
def check_ratelimit(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    try:
        section = ratelimit_settings()
        policy = build_policy(section) if section is not None else None
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix settings.GATEKEEP['ratelimit'].", id="gatekeep.E001")]
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if policy is not None and MIDDLEWARE not in middleware:
        errors.append(Warning(
            'settings.GATEKEEP["ratelimit"] is set but the rate-limit middleware is not in '
            "MIDDLEWARE, so nothing is limited.",
            hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE.", id="gatekeep.W001"))
    if policy is not None and MIDDLEWARE in middleware:
        uses_user = any(isinstance(f, user_key) for f in policy.key_functions)
        if uses_user and (AUTH not in middleware
                          or middleware.index(AUTH) > middleware.index(MIDDLEWARE)):
            errors.append(Error(
                "A rate-limit rule keys on the user, but AuthenticationMiddleware does not "
                "run before the rate-limit middleware.",
                hint=f"Put {MIDDLEWARE!r} after {AUTH!r} in MIDDLEWARE.", id="gatekeep.E002"))
    return errors


@register(Tags.security, Tags.compatibility)  # type: ignore[untyped-decorator]
def check_sessions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With gatekeep's session engine, ``GATEKEEP["sessions"]`` must build a store."""
    if getattr(settings, "SESSION_ENGINE", None) != ENGINE:
        return []
    try:
        build_session_store()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint='Fix settings.GATEKEEP["sessions"].', id="gatekeep.E003")]
    return []
