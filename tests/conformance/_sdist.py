"""Fetch a third-party test suite at test time, and run it against gatekeep.

The tests are read from the sdist of the *installed* version of the project (so they
describe the code that is installed), fetched (from the index's JSON API, else with
pip) into a cache outside the repository (``$GATEKEEP_CONFORMANCE_CACHE``, else
``~/.cache/gatekeep-conformance``), never copied into it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import ssl
import subprocess
import sys
import tarfile
import urllib.request
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

__all__ = [
    "Unavailable",
    "cache_dir",
    "fetch_sdist",
    "replace_import",
    "run_pytest",
    "sdist_archive",
]


class Unavailable(RuntimeError):
    """The sdist could not be fetched (no network, no such release)."""


def cache_dir() -> Path:
    root = os.environ.get("GATEKEEP_CONFORMANCE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "gatekeep-conformance"


def sdist_archive(project: str) -> tuple[str, Path]:
    """``(version, path)`` of the installed version's sdist, downloaded once into the
    cache with ``pip download --no-deps --no-binary :all:``."""
    ver = version(project)
    download = cache_dir() / "sdists"
    download.mkdir(parents=True, exist_ok=True)
    names = (f"{project.replace('-', '_')}-{ver}.tar.gz", f"{project}-{ver}.tar.gz")

    def found() -> Path | None:
        for path in download.glob("*.tar.gz"):
            if path.name.lower() in names:
                return path
        return None

    archive = found()
    if archive is not None:
        return ver, archive
    archive = _from_index(project, ver, names, download)
    if archive is not None:
        return ver, archive
    # pip prepares the sdist's metadata, in a build environment it installs first
    # (hatchling, setuptools): about a minute, hence the index first
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        f"{project}=={ver}",
        "-d",
        str(download),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"`{' '.join(cmd)}` failed: {exc}") from None
    archive = found()
    if done.returncode != 0 or archive is None:
        raise Unavailable(
            f"could not download the {project} {ver} sdist: "
            f"{(done.stderr or done.stdout).strip()[-400:]}"
        )
    return ver, archive


def _from_index(project: str, ver: str, names: tuple[str, ...], into: Path) -> Path | None:
    """The sdist fetched straight from the package index's JSON simple API (PEP 691),
    its sha256 checked; None when that does not work (pip then does it)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    if not index.startswith("https://"):
        return None
    cafile = os.environ.get("PIP_CERT") or None
    context = ssl.create_default_context(cafile=cafile)
    request = urllib.request.Request(
        f"{index}/{project.lower()}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            files = json.load(r)["files"]
        entry = next(f for f in files if f["filename"].lower() in names)
        with urllib.request.urlopen(entry["url"], timeout=60, context=context) as r:
            data = r.read()
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    wanted = entry.get("hashes", {}).get("sha256")
    if wanted is None or hashlib.sha256(data).hexdigest() != wanted:
        return None
    path = into / entry["filename"]
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def fetch_sdist(
    project: str, members: list[str], optional: tuple[str, ...] = ()
) -> tuple[str, Path]:
    """``(version, directory)``: ``members`` (paths inside the sdist, such as
    ``tests/conftest.py`` and ``pyproject.toml``) of the installed version's sdist,
    extracted once into the cache; each of ``optional`` too where that version has it
    (a file a later release added)."""
    ver = version(project)
    target = cache_dir() / f"{project}-{ver}"
    required = [m for m in members if m not in optional]
    if all((target / m).is_file() for m in required):
        return ver, target
    ver, archive = sdist_archive(project)
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/", 1)[0]
        for member in members:
            try:
                info = tar.getmember(f"{top}/{member}")
            except KeyError:
                if member in optional:
                    continue
                raise Unavailable(f"{member} is not in {archive.name}") from None
            data = tar.extractfile(info)
            assert data is not None
            path = target / member
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.read())
    return ver, target


def replace_import(source: str, module: str, name: str, replacement: str) -> str:
    """``source`` with ``name`` no longer imported from ``module`` but from
    ``replacement`` (the other names of that import stay). Raises ``LookupError``
    when no such import is found: the suite changed, the harness must be looked at."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == module
            and any(a.name == name for a in node.names)
        ):
            rest = [a for a in node.names if a.name != name]
            new = f"from {replacement} import {name}\n"
            if rest:
                kept = ", ".join(
                    a.name if a.asname is None else f"{a.name} as {a.asname}" for a in rest
                )
                new = f"from {module} import {kept}\n" + new
            assert node.end_lineno is not None
            return "".join([*lines[: node.lineno - 1], new, *lines[node.end_lineno :]])
    raise LookupError(f"no `from {module} import {name}` in the source")


def pytest_ini(pyproject: Path) -> str:
    """The project's own ``[tool.pytest.ini_options]`` as a pytest.ini."""
    if tomllib is None:
        raise Unavailable("reading the suite's pytest options needs Python 3.11 (tomllib)")
    options = tomllib.loads(pyproject.read_text())["tool"]["pytest"]["ini_options"]
    out = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            out.append(f"{key} =")
            out += [f"    {v}" for v in value]
        else:
            out.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    return "\n".join(out) + "\n"


def run_pytest(
    directory: Path,
    target: str,
    env: dict[str, str],
    *,
    disable: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
) -> dict[str, str]:
    """Run pytest on ``target`` in ``directory`` (a separate process); the outcome
    (``passed``, ``failed``, ``error``, ``skipped``) of each test, by its id."""
    report = directory / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        target,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        "--rootdir",
        str(directory),
    ]
    for plugin in disable:
        cmd += ["-p", f"no:{plugin}"]
    cmd += args
    done = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True, timeout=600)
    if not report.is_file():
        raise RuntimeError(
            f"pytest did not run ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        )
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = (
            "failed"
            if "failure" in kinds
            else "error"
            if "error" in kinds
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        outcomes[case.get("name", "?")] = outcome
    if not outcomes:
        raise RuntimeError(f"pytest collected nothing:\n{done.stdout[-3000:]}")
    return outcomes
