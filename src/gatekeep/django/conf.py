"""``settings.GATEKEEP["ratelimit"]`` → a :class:`RateLimitPolicy`, and
``settings.GATEKEEP["sessions"]`` → the :class:`SessionStore` of the session engine.

Every keyword of the policy is accepted; besides Python objects, settings may
use plain data: rules as dicts (``{"limits": ..., "path": ..., "methods": ...,
"key": ..., "name": ...}``), key and deny functions as dotted import paths, and
``trusted_proxies`` (a list of networks) for the default ``client_ip`` key.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

from ..backends.memory import MemoryBackend
from ..backends.redis import RedisBackend
from ..ratelimit.core import RateLimitPolicy
from ..ratelimit.keys import client_ip
from ..ratelimit.rules import Rule
from ..sessions.store import SessionStore

__all__ = ["build_policy", "build_session_store", "ratelimit_settings", "session_settings"]

_CALLABLES = ("key", "deny")


def ratelimit_settings() -> dict[str, Any] | None:
    """The ``ratelimit`` part of ``settings.GATEKEEP``, or None when absent."""
    conf = getattr(settings, "GATEKEEP", None)
    if conf is None:
        return None
    if not isinstance(conf, dict):
        raise ImproperlyConfigured(f"settings.GATEKEEP must be a dict, got {type(conf).__name__}")
    section = conf.get("ratelimit")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ImproperlyConfigured(
            'settings.GATEKEEP["ratelimit"] must be a dict of RateLimitPolicy options'
        )
    return section


def _callable(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f'GATEKEEP["ratelimit"]: cannot import {what} {value!r}: {exc}'
            ) from None
        if what != "deny" and isinstance(value, type):
            value = value()  # "gatekeep.ratelimit.client_ip" means client_ip()
    return value


def _rule(item: Any) -> Rule:
    if isinstance(item, Rule):
        return item
    if isinstance(item, dict):
        item = dict(item)
        if "key" in item:
            item["key"] = _callable(item["key"], "rule key")
        return Rule(**item)
    raise ImproperlyConfigured(
        f'GATEKEEP["ratelimit"]["rules"]: each rule is a Rule or a dict '
        f'like {{"limits": "5/minute", "path": "POST /login/"}}, '
        f"got {item!r}"
    )


def build_policy(section: dict[str, Any] | None = None) -> RateLimitPolicy:
    """Build the policy; any misconfiguration raises ``ImproperlyConfigured``."""
    if section is None:
        section = ratelimit_settings() or {}
    options = dict(section)
    try:
        for name in _CALLABLES:
            if name in options:
                options[name] = _callable(options[name], name)
        proxies = options.pop("trusted_proxies", None)
        if proxies is not None:
            if options.get("key") is not None:
                raise ImproperlyConfigured(
                    'GATEKEEP["ratelimit"]: give trusted_proxies or key, '
                    "not both (use key=client_ip(trusted=...))"
                )
            options["key"] = client_ip(trusted=proxies)
        if "rules" in options:
            options["rules"] = [_rule(r) for r in options["rules"]]
        return RateLimitPolicy(**options)
    except ImproperlyConfigured:
        raise
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f'GATEKEEP["ratelimit"]: {exc}') from exc


# -- sessions ------------------------------------------------------------------------------

_SESSION_OPTIONS = frozenset(
    {
        "url",
        "backend",
        "store",
        "prefix",
        "idle_timeout",
        "absolute_timeout",
        "max_size",
        "max_sessions_per_user",
    }
)
#: ``absolute_timeout`` when not given: at least this, and never below ``idle_timeout``.
DEFAULT_ABSOLUTE = 30 * 24 * 3600


def session_settings() -> dict[str, Any]:
    """The ``sessions`` part of ``settings.GATEKEEP`` (``{}`` when absent)."""
    conf = getattr(settings, "GATEKEEP", None)
    if conf is None:
        return {}
    if not isinstance(conf, dict):
        raise ImproperlyConfigured(f"settings.GATEKEEP must be a dict, got {type(conf).__name__}")
    section = conf.get("sessions")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ImproperlyConfigured(
            'settings.GATEKEEP["sessions"] must be a dict like '
            '{"url": "redis://localhost:6379/0", "prefix": "myapp"}'
        )
    return section


def build_session_store(section: dict[str, Any] | None = None) -> SessionStore:
    """The :class:`SessionStore` the Django session engine uses.

    ``url`` (a Redis URL) or ``backend`` (a ``RedisBackend``, or a ``MemoryBackend``
    / None for in-process), or a ready ``store``; ``prefix``; ``idle_timeout`` (seconds
    a session lives after its last save: Django's ``SESSION_COOKIE_AGE`` by default);
    ``absolute_timeout`` (seconds after which it ends however it is used: 30 days, or
    ``idle_timeout`` if longer); ``max_size``; ``max_sessions_per_user``.
    Misconfiguration raises ``ImproperlyConfigured``.
    """
    if section is None:
        section = session_settings()
    unknown = set(section) - _SESSION_OPTIONS
    if unknown:
        raise ImproperlyConfigured(
            f'GATEKEEP["sessions"]: unknown option(s) '
            f"{', '.join(sorted(unknown))}; use "
            f"{', '.join(sorted(_SESSION_OPTIONS))}"
        )
    if "store" in section:
        store = section["store"]
        if not isinstance(store, SessionStore) or len(section) > 1:
            raise ImproperlyConfigured(
                'GATEKEEP["sessions"]["store"] must be a gatekeep '
                "SessionStore, given alone (it carries its own options)"
            )
        return store
    if "url" in section and "backend" in section:
        raise ImproperlyConfigured('GATEKEEP["sessions"]: give url or backend, not both')
    backend = section.get("url", section.get("backend"))
    idle = section.get("idle_timeout", getattr(settings, "SESSION_COOKIE_AGE", 1209600))
    try:
        absolute = section.get(
            "absolute_timeout",
            max(DEFAULT_ABSOLUTE, idle) if isinstance(idle, (int, float)) else DEFAULT_ABSOLUTE,
        )
        options = {k: section[k] for k in ("max_size", "max_sessions_per_user") if k in section}
        if backend is not None and not isinstance(backend, (str, RedisBackend, MemoryBackend)):
            raise TypeError(
                "url must be a Redis URL, backend a RedisBackend or MemoryBackend, "
                f"not {type(backend).__name__}"
            )
        return SessionStore(
            backend,
            prefix=section.get("prefix", ""),
            idle_timeout=idle,
            absolute_timeout=absolute,
            **options,
        )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f'GATEKEEP["sessions"]: {exc}') from exc
