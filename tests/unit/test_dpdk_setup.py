# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the DPDK set-up: meson options, source version choice, stamp, record (nothing is built)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.vmharness import dpdk

MADISON = """\
      dpdk | 24.11.8-0+deb13u1 | http://deb.debian.org/debian trixie/main amd64 Packages
      dpdk | 22.11.11-0+deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
      dpdk | 22.11.7-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
      dpdk | 20.11.10-1~deb11u1 | http://deb.debian.org/debian bullseye/main amd64 Packages
      dpdk | 24.11.8-0+deb13u1 | http://deb.debian.org/debian trixie/main Sources
      dpdk | 22.11.9-0+deb12u1 | http://deb.debian.org/debian bookworm/main Sources
      dpdk | 22.11.11-0+deb12u1 | http://deb.debian.org/debian bookworm/main Sources
      dpdk | 22.11.10-0+deb12u1 | http://deb.debian.org/debian bookworm/main Sources
"""


def _options(prefix: str = "/cache/dpdk/v") -> dict[str, str]:
    parsed = {}
    for argument in dpdk.meson_options(prefix):
        name, value = argument.lstrip("-").split("=", 1)
        assert name not in parsed, f"{name} given twice"
        parsed[name.removeprefix("D")] = value
    return parsed


def test_meson_options_enable_kni_and_nothing_else_deprecated() -> None:
    options = _options()
    disabled = options["disable_libs"].split(",")
    assert "kni" not in disabled
    assert "flow_classify" in disabled


def test_meson_options_name_the_drivers_and_apps() -> None:
    options = _options()
    drivers = set(options["enable_drivers"].split(","))
    assert {"net/kni", "net/null", "net/ring", "net/virtio", "bus/vdev", "bus/pci", "mempool/ring"} <= drivers
    assert options["enable_apps"] == "test-pmd"
    assert options["tests"] == "true"


def test_meson_options_generic_cpu_no_kernel_module_into_prefix() -> None:
    options = _options("/cache/dpdk/22.11.11-0+deb12u1")
    assert options["platform"] == "generic"
    assert options["enable_kmods"] == "false"
    assert options["prefix"] == "/cache/dpdk/22.11.11-0+deb12u1"
    assert options["default-library"] == "static"


def test_version_is_the_newest_bookworm_source() -> None:
    # Not trixie's 24.11, not a binary line, and dpkg's order (22.11.11 after 22.11.9).
    assert dpdk.choose_version(MADISON) == "22.11.11-0+deb12u1"


def test_version_needs_a_source_line() -> None:
    binaries_only = "\n".join(line for line in MADISON.splitlines() if "Sources" not in line)
    with pytest.raises(RuntimeError, match=r"no dpdk 22\.11 source package in bookworm; is the deb-src entry"):
        dpdk.choose_version(binaries_only)


def test_version_keeps_to_the_series() -> None:
    other = MADISON.replace("22.11.", "23.11.")
    with pytest.raises(RuntimeError, match=r"no dpdk 22\.11 source"):
        dpdk.choose_version(other)


def test_stamp_matches_version_and_options(tmp_path) -> None:
    root = str(tmp_path)
    options = dpdk.meson_options(root)
    assert not dpdk.is_current(root, "22.11.11-0+deb12u1", options)
    (tmp_path / dpdk.STAMP).write_text(dpdk.stamp_text("22.11.11-0+deb12u1", options))
    assert dpdk.is_current(root, "22.11.11-0+deb12u1", options)
    assert not dpdk.is_current(root, "22.11.12-0+deb12u1", options)
    assert not dpdk.is_current(root, "22.11.11-0+deb12u1", [*options, "-Dtests=false"])


BULLSEYE_QUERY = "".join(f"{package} ii 20.11.10-1~deb11u1\n" for package in dpdk.BULLSEYE_PACKAGES)


def test_bullseye_packages_all_installed() -> None:
    versions = dpdk.installed_versions(BULLSEYE_QUERY, dpdk.BULLSEYE_PACKAGES)
    assert versions == dict.fromkeys(dpdk.BULLSEYE_PACKAGES, "20.11.10-1~deb11u1")


def test_bullseye_packages_include_testpmd() -> None:
    # Bullseye's dpdk package holds only scripts; dpdk-testpmd is in dpdk-dev.
    assert {"dpdk-dev", "librte-kni21", "librte-net-kni21"} <= set(dpdk.BULLSEYE_PACKAGES)


@pytest.mark.parametrize(
    "query",
    [
        "",
        BULLSEYE_QUERY.replace("librte-kni21 ii 20.11.10-1~deb11u1\n", ""),
        BULLSEYE_QUERY.replace("librte-net-kni21 ii", "librte-net-kni21 rc"),
    ],
)
def test_bullseye_packages_missing_or_removed(query: str) -> None:
    assert query != BULLSEYE_QUERY
    assert dpdk.installed_versions(query, dpdk.BULLSEYE_PACKAGES) is None


def _record() -> dpdk.Dpdk:
    return dpdk.Dpdk(
        version="22.11.11-0+deb12u1",
        upstream_version="22.11.11",
        prefix="/c/dpdk/22.11.11-0+deb12u1",
        source="/c/dpdk/22.11.11-0+deb12u1/source",
        dpdk_test="/c/dpdk/22.11.11-0+deb12u1/bin/dpdk-test",
        dpdk_testpmd="/c/dpdk/22.11.11-0+deb12u1/bin/dpdk-testpmd",
        bullseye_chroot="/c/chroots/bullseye",
        bullseye_version="20.11.10-1~deb11u1",
        bullseye_testpmd="/usr/bin/dpdk-testpmd",
    )


def test_load_reads_the_record(tmp_path) -> None:
    path = tmp_path / "dpdk.json"
    path.write_text(json.dumps(dataclasses.asdict(_record())))
    assert dpdk.load(str(path)) == _record()


def test_load_without_setup_names_the_file(tmp_path) -> None:
    path = tmp_path / "dpdk.json"
    with pytest.raises(LookupError, match=r"DPDK is not set up \(.*dpdk\.json is missing\)"):
        dpdk.load(str(path))


@pytest.mark.parametrize("text", ["{", "[]", '{"version": "22.11.11"}'])
def test_load_refuses_a_bad_record(tmp_path, text: str) -> None:
    path = tmp_path / "dpdk.json"
    path.write_text(text)
    with pytest.raises(LookupError, match=r"dpdk\.json (is not valid JSON|does not hold the fields)"):
        dpdk.load(str(path))
