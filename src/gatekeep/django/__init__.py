"""Django: rate-limit middleware (sync and async), per-view decorators, settings and
system checks.

settings.py::

    INSTALLED_APPS = [..., "gatekeep.django"]        # registers the system checks
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "gatekeep.django.middleware.RateLimitMiddleware"]
    GATEKEEP = {
        "ratelimit": {
            "default": "100/minute",
            "rules": [{"limits": "5/minute", "path": "POST /login/", "name": "login"}],
            "exempt": ["/health/"],
            "backend": "redis://localhost:6379/0",
            "trusted_proxies": ["10.0.0.0/8"],
        },
    }

views.py::

    from gatekeep.django.decorators import ratelimit, ratelimit_exempt

    @ratelimit("10/minute", key=user(fallback=client_ip()))
    def search(request): ...
"""
