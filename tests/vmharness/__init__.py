# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel test VM harness: Debian matrix kernels booted under QEMU over the host's root filesystem."""
