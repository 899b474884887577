"""Volume files in the kubelet's layout, subPaths and fsGroup (on a temporary directory, no cluster)."""

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import volumes  # noqa: E402


def test_payload_behind_a_data_link_and_swapped_on_change(tmp_path):
    target = tmp_path / "config"
    assert volumes.write_payload(target, {"a.conf": (b"one", 0o644), "dir/b": (b"two", 0o600)})
    assert (target / "a.conf").read_text() == "one" and (target / "dir" / "b").read_text() == "two"
    assert os.readlink(target / "a.conf") == "..data/a.conf" and (target / "..data").is_symlink()
    assert stat.S_IMODE((target / "dir" / "b").stat().st_mode) == 0o600
    first = os.readlink(target / "..data")
    assert not volumes.write_payload(target, {"a.conf": (b"one", 0o644), "dir/b": (b"two", 0o600)})
    assert volumes.write_payload(target, {"a.conf": (b"changed", 0o644)})
    assert (target / "a.conf").read_text() == "changed" and not (target / "dir").exists()
    assert os.readlink(target / "..data") != first
    assert not (target / first).exists()


def test_sub_paths_are_made_in_writable_volumes_and_must_stay_inside(tmp_path):
    empty = volumes.Volume("scratch", "emptyDir", tmp_path / "scratch")
    empty.path.mkdir()
    source, read_only = volumes.mount_source(empty, {"name": "scratch", "subPath": "models/a"}, {})
    assert source == empty.path / "models" / "a" and source.is_dir() and not read_only
    source, _ = volumes.mount_source(empty, {"name": "scratch", "subPathExpr": "$(POD)"}, {"POD": "web-0"})
    assert source == empty.path / "web-0"
    with pytest.raises(volumes.VolumeError, match="relative path"):
        volumes.mount_source(empty, {"name": "scratch", "subPath": "../etc"}, {})
    config = volumes.Volume("config", "configMap", tmp_path / "config", read_only=True)
    volumes.write_payload(config.path, {"nginx.conf": (b"x", 0o644)})
    assert volumes.mount_source(config, {"name": "config", "subPath": "nginx.conf"}, {}) == \
        (config.path / "nginx.conf", True)
    with pytest.raises(volumes.VolumeError, match="does not exist"):
        volumes.mount_source(config, {"name": "config", "subPath": "other"}, {})


@pytest.mark.skipif(os.geteuid() != 0, reason="chgrp to another group needs root")
def test_fs_group_makes_the_volume_group_writable(tmp_path):
    root = tmp_path / "vol"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file").write_text("x")
    os.chmod(root, 0o755)
    volumes.apply_fs_group(root, 1234)
    for path in (root, root / "sub"):
        info = path.stat()
        assert info.st_gid == 1234 and stat.S_IMODE(info.st_mode) & 0o2070 == 0o2070
    assert (root / "sub" / "file").stat().st_gid == 1234
    os.chown(root / "sub" / "file", -1, 0)
    volumes.apply_fs_group(root, 1234, policy="OnRootMismatch")  # the root matches: nothing is walked
    assert (root / "sub" / "file").stat().st_gid == 0
