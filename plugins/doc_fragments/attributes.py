# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The attributes every kernelnic.kni module shares, documented once."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    # Modules that change the host: full check mode and diff.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
"""

    # Modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: N/A
    details: The module changes nothing.
  platform:
    platforms: linux
"""
