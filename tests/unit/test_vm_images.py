# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM image recipe and the QEMU command line of instances (no image is built, no VM booted)."""

from __future__ import annotations

import subprocess

import pytest

from tests.vmharness import images, instances


def test_customize_script_is_valid_shell_and_lays_every_file() -> None:
    script = images._customize_script()
    subprocess.run(["sh", "-n", "-c", script], check=True)
    for path in images.FILES:
        assert f'cat > "$root/{path}"' in script


def test_customize_script_writes_files_verbatim(tmp_path) -> None:
    # Run only the file-laying part against a scratch root (systemctl needs a real tree).
    lines = [line for line in images._customize_script().split("\n") if "systemctl" not in line]
    subprocess.run(["sh", "-c", "\n".join(lines), "sh", str(tmp_path)], check=True)
    for path, text in images.FILES.items():
        assert (tmp_path / path).read_text() == text
    assert (tmp_path / "usr/local/sbin/kni-authorized-keys").stat().st_mode & 0o111


def test_recipe_hash_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.recipe_hash("bookworm")
    assert before != images.recipe_hash("trixie")
    monkeypatch.setattr(images, "PACKAGES", (*images.PACKAGES, "strace"))
    assert images.recipe_hash("bookworm") != before


def test_unknown_suite_is_named() -> None:
    with pytest.raises(KeyError, match="sid"):
        images.cached("sid")


def test_qemu_only_forwards_ssh_on_loopback(tmp_path) -> None:
    image = images.Image("bookworm", str(tmp_path), "6.1.0-1-amd64")
    command = instances._qemu_command(image, str(tmp_path / "vm"), "kni-bookworm", 2222, 2048, 2)
    netdev = command[command.index("-netdev") + 1]
    assert netdev == "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    assert "hugepages=64" in command[command.index("-append") + 1]
    assert command[command.index("-fw_cfg") + 1].startswith("name=opt/kernelnic/authorized_keys,file=")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "a b"])
def test_bad_instance_names_are_refused(name: str) -> None:
    with pytest.raises(instances.InstanceError, match="instance name"):
        instances.load(name, "/nonexistent")
