"""Django's own test suite for sessions, from the sdist of the installed Django.

Fetched at test time with pip (``pip download --no-deps --no-binary :all:``) into a cache
outside the repository (``$GATEKEEP_CONFORMANCE_CACHE``, default
``~/.cache/gatekeep-conformance``), and only ``tests/sessions_tests`` is extracted.
Nothing of it is copied into the repository.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["FetchError", "cache_dir", "django_tests_dir"]

PACKAGE = "sessions_tests"


class FetchError(RuntimeError):
    """The sdist could not be downloaded or did not hold the expected tests."""


def cache_dir() -> Path:
    configured = os.environ.get("GATEKEEP_CONFORMANCE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "gatekeep-conformance"


def _sdist(cache: Path, version: str) -> Path:
    def found() -> Path | None:
        for path in cache.glob("*.tar.gz"):
            if path.name.lower() == f"django-{version}.tar.gz":
                return path
        return None

    path = found()
    if path is not None:
        return path
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        f"django=={version}",
        "-d",
        str(cache),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip download of Django {version} failed: {exc}") from exc
    path = found()
    if done.returncode != 0 or path is None:
        raise FetchError(
            f"pip download of Django {version}'s sdist failed "
            f"(exit {done.returncode}): {done.stderr.strip()[-600:]}"
        )
    return path


def _extract(sdist: Path, target: Path) -> None:
    """Copy the files of ``*/tests/sessions_tests/`` (regular files only, by base name:
    no path from the archive is used) into ``target/sessions_tests``."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        package = tmp / PACKAGE
        package.mkdir()
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if (
                    member.isfile()
                    and parts[-3:-1] == ["tests", PACKAGE]
                    and parts[-1].endswith(".py")
                ):
                    source = tar.extractfile(member)
                    if source is not None:
                        (package / parts[-1]).write_bytes(source.read())
        if not (package / "tests.py").exists():
            raise FetchError(f"{sdist.name} has no tests/{PACKAGE}/tests.py")
        target.mkdir(parents=True, exist_ok=True)
        try:
            package.rename(target / PACKAGE)  # atomic: a concurrent run may win
        except OSError:
            if not (target / PACKAGE / "tests.py").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def django_tests_dir() -> Path:
    """A directory holding the ``sessions_tests`` package of the installed Django."""
    version = importlib.metadata.version("django")
    cache = cache_dir()
    target = cache / f"django-{version}-tests"
    if (target / PACKAGE / "tests.py").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    _extract(_sdist(cache, version), target)
    return target
