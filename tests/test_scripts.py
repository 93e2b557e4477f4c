"""The Lua scripts load from the checkout (editable install) and from a built wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gatekeep import ALGORITHMS
from gatekeep.scripts import limiter_script, lua_dir, read_lua

ROOT = Path(__file__).resolve().parent.parent


def test_scripts_load_from_the_checkout():
    assert lua_dir() == ROOT / "lua"
    for name in ALGORITHMS:
        script = limiter_script(name)
        assert script.source.startswith(read_lua("_prelude"))
        assert script.source.rstrip().endswith("return out")
        assert len(script.sha) == 40


def test_every_script_has_a_header():
    for path in sorted((ROOT / "lua").glob("*.lua")):
        head = path.read_text().splitlines()[:12]
        assert head[0].startswith("-- gatekeep:"), path.name
        if not path.name.startswith("_"):
            text = "\n".join(head)
            assert "KEYS[" in text and "ARGV[" in text and "Returns" in text, path.name


@pytest.mark.slow
def test_scripts_load_from_an_installed_wheel(tmp_path):
    dist, target = tmp_path / "dist", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("gatekeep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gatekeep/py.typed" in names
    for name in ALGORITHMS:
        assert f"gatekeep/lua/{name}.lua" in names
    zipfile.ZipFile(wheel).extractall(target)

    probe = (
        "import gatekeep, gatekeep.scripts as s;"
        "from gatekeep import ALGORITHMS, Limiter;"
        "print(gatekeep.__file__); print(s.lua_dir());"
        "[s.limiter_script(n) for n in ALGORITHMS];"
        "print(Limiter('1/s').hit('k').allowed)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(target)), out
    assert out[1] == str(target / "gatekeep" / "lua"), out
    assert out[2] == "True"
