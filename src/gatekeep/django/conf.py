"""``settings.GATEKEEP["ratelimit"]`` → a :class:`RateLimitPolicy`.

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

from ..ratelimit.core import RateLimitPolicy
from ..ratelimit.keys import client_ip
from ..ratelimit.rules import Rule

__all__ = ["build_policy", "ratelimit_settings"]

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
        raise ImproperlyConfigured('settings.GATEKEEP["ratelimit"] must be a dict of '
                                   "RateLimitPolicy options")
    return section


def _callable(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f'GATEKEEP["ratelimit"]: cannot import {what} '
                                       f"{value!r}: {exc}") from None
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
    raise ImproperlyConfigured(f'GATEKEEP["ratelimit"]["rules"]: each rule is a Rule or a dict '
                               f'like {{"limits": "5/minute", "path": "POST /login/"}}, '
                               f"got {item!r}")


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
                raise ImproperlyConfigured('GATEKEEP["ratelimit"]: give trusted_proxies or key, '
                                           "not both (use key=client_ip(trusted=...))")
            options["key"] = client_ip(trusted=proxies)
        if "rules" in options:
            options["rules"] = [_rule(r) for r in options["rules"]]
        return RateLimitPolicy(**options)
    except ImproperlyConfigured:
        raise
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f'GATEKEEP["ratelimit"]: {exc}') from exc
