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
LOCALE = "django.middleware.locale.LocaleMiddleware"


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
        errors.append(
            Warning(
                'settings.GATEKEEP["ratelimit"] is set but the rate-limit middleware is not in '
                "MIDDLEWARE, so nothing is limited.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE.",
                id="gatekeep.W001",
            )
        )
    if policy is not None and MIDDLEWARE in middleware:
        uses_user = any(isinstance(f, user_key) for f in policy.key_functions)
        if uses_user and (
            AUTH not in middleware or middleware.index(AUTH) > middleware.index(MIDDLEWARE)
        ):
            errors.append(
                Error(
                    "A rate-limit rule keys on the user, but AuthenticationMiddleware does not "
                    "run before the rate-limit middleware.",
                    hint=f"Put {MIDDLEWARE!r} after {AUTH!r} in MIDDLEWARE.",
                    id="gatekeep.E002",
                )
            )
    if (
        policy is not None
        and MIDDLEWARE in middleware
        and LOCALE in middleware
        and middleware.index(LOCALE) > middleware.index(MIDDLEWARE)
        and _i18n_patterns()
    ):
        errors.append(
            Warning(
                "The rate-limit middleware runs before LocaleMiddleware with i18n_patterns: "
                "the language of the URL is not active yet, so the @ratelimit and "
                "@ratelimit_exempt marks of views under a language prefix can be missed.",
                hint=f"Put {MIDDLEWARE!r} after {LOCALE!r} in MIDDLEWARE.",
                id="gatekeep.W002",
            )
        )
    if policy is not None:
        errors.extend(_slash_mismatches(policy))
    return errors


def _resolves(path: str) -> bool:
    from django.urls import Resolver404, resolve  # type: ignore[import-untyped]

    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def _slash_mismatches(policy: Any) -> list[CheckMessage]:
    """Exact rule paths no URL serves while the same path with (or without) a trailing
    slash is a route: the rule would never see the view's requests."""
    found: list[CheckMessage] = []
    try:
        for rule in policy.rules:
            for pattern in rule.patterns:
                path = pattern.exact
                if path is None or path == "/" or _resolves(path):
                    continue
                other = path[:-1] if path.endswith("/") else path + "/"
                if _resolves(other):
                    found.append(
                        Warning(
                            f"Rate-limit rule {rule.name!r}: no URL is {path!r}, Django routes "
                            f"{other!r}, so the rule never counts that view's requests.",
                            hint=f"Write the rule's path as {other!r}.",
                            id="gatekeep.W003",
                        )
                    )
    except Exception:  # a broken urlconf: Django's own URL checks report it
        return []
    return found


def _i18n_patterns() -> bool:
    from django.conf.urls.i18n import is_language_prefix_patterns_used  # type: ignore[import-untyped]

    try:
        return bool(is_language_prefix_patterns_used(settings.ROOT_URLCONF)[0])
    except Exception:  # a broken urlconf: Django's own URL checks report it
        return False


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
