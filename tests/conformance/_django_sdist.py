"""Django's own test suite for sessions, from the sdist of the installed Django.

Fetched at test time with pip (``pip download --no-deps --no-binary :all:``) into a cache
outside the repository (``$GATEKEEP_CONFORMANCE_CACHE``, default
``~/.cache/gatekeep-conformance``), and only ``tests/sessions_tests`` is extracted.
Nothing of it is copied into the repository.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from ._sdist import Unavailable as FetchError
from ._sdist import cache_dir, sdist_archive

__all__ = ["FetchError", "cache_dir", "django_tests_dir"]

PACKAGE = "sessions_tests"


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
    version, archive = sdist_archive("django")
    target = cache_dir() / f"django-{version}-tests"
    if not (target / PACKAGE / "tests.py").exists():
        _extract(archive, target)
    return target
