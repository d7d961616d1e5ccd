# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``ansible_collections/kernelnic/kni`` symlink tree that makes this checkout an installed collection.

ansible-test arranges this path itself; pytest, the benchmarks and ``ansible-playbook`` in the demo need
``.collection-root/ansible_collections/kernelnic/kni`` pointing at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTION_ROOT = os.path.join(REPO_ROOT, ".collection-root")


def ensure_collection_path(importable: bool = True) -> str:
    """Create the symlink if missing (and put it on ``sys.path`` when ``importable``); returns COLLECTION_ROOT."""
    link = os.path.join(COLLECTION_ROOT, "ansible_collections", "kernelnic", "kni")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.symlink(REPO_ROOT, link)
    if importable and COLLECTION_ROOT not in sys.path:
        sys.path.insert(0, COLLECTION_ROOT)
    return COLLECTION_ROOT
