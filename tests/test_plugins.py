"""Codec discovery: entry points when nvc-pipe is installed, the in-tree plugins when only PYTHONPATH points at it."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tomllib

from conftest import ROOT

from nvc_pipe import plugins


def test_in_tree_table_is_pyprojects_entry_points():
    with open(ROOT / "pyproject.toml", "rb") as f:
        eps = tomllib.load(f)["project"]["entry-points"]
    assert plugins.IN_TREE == {plugins.GROUP: eps[plugins.GROUP], plugins.IMAGE_GROUP: eps[plugins.IMAGE_GROUP]}


def test_installed_metadata_lists_every_codec():
    assert plugins.metadata_installed()  # the test environment is a pip install of the tree
    assert plugins.available_codecs() == ["c3", "hinerv"]
    assert plugins.available_image_codecs() == ["balle", "c3", "evc"]


def _bare_tree(tmp_path):
    """PYTHONPATH for the tree without any nvc-pipe metadata: the packages linked into a fresh folder (the checkout
    holds a git-ignored nvc_pipe.egg-info that would still name the entry points), and the venv's site-packages
    minus nvc-pipe's dist-info, its editable finder and .pth files (`python -S` does not read .pth files anyway)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "nvc_pipe").symlink_to(ROOT / "nvc_pipe")
    (tree / "plugins").symlink_to(ROOT / "plugins")
    libs = tmp_path / "site"
    libs.mkdir()
    for sp in site.getsitepackages():
        for name in os.listdir(sp):
            if name.startswith(("nvc_pipe", "nvc-pipe", "__editable__")) or name.endswith(".pth"):
                continue
            if not (libs / name).exists():
                (libs / name).symlink_to(os.path.join(sp, name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "plugins"), str(libs)])
    return env


PROBE = """
import json, importlib.metadata as md
from nvc_pipe import plugins
from nvc_pipe.errors import ConfigError
def unknown():
    try:
        plugins.load_codec("nope")
    except ConfigError as exc:
        return str(exc)
print(json.dumps({"installed": plugins.metadata_installed(),
                  "entry_points": sorted(ep.name for g in (plugins.GROUP, plugins.IMAGE_GROUP)
                                         for ep in md.entry_points(group=g)),
                  "codecs": plugins.available_codecs(), "image_codecs": plugins.available_image_codecs(),
                  "hinerv_module": type(plugins.load_codec("hinerv")).__module__, "unknown": unknown()}))
"""


def test_codecs_found_from_pythonpath_alone(tmp_path, media):
    """The GPU machine's setup: the tree and its dependencies on PYTHONPATH, nothing pip-installed."""
    env = _bare_tree(tmp_path)

    def run(*args):
        return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    probe = run("-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    # the no-metadata path really ran: no nvc-pipe distribution and no entry points visible in that process
    assert got["installed"] is False and got["entry_points"] == []
    assert got["codecs"] == ["c3", "hinerv"] and got["image_codecs"] == ["balle", "c3", "evc"]
    assert got["hinerv_module"] == "nvc_hinerv.codec"
    assert got["unknown"] == "unknown codec 'nope' (installed: c3, hinerv)"
    out = tmp_path / "t.mkv"
    enc = run("-m", "nvc_pipe", "encode", str(media["odd"]), "-o", str(out), "--preset", "tiny", "--epochs", "1",
              "--quiet", "--json")
    assert enc.returncode == 0, enc.stderr
    assert json.loads(enc.stdout)["codec"] == "hinerv" and out.stat().st_size > 0
