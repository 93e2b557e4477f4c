from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]


class GatekeepConfig(AppConfig):  # type: ignore[misc]
    name = "gatekeep.django"
    label = "gatekeep"
    verbose_name = "gatekeep"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
