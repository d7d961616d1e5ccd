# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ``ansible_collections.kernelnic.kni`` for plain pytest runs.

ansible-test arranges this path itself; pytest (on the host and inside test guests) needs a
symlink tree, kept in ``.collection-root/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTION_ROOT = os.path.join(REPO_ROOT, ".collection-root")


def _ensure_collection_path() -> None:
    link = os.path.join(COLLECTION_ROOT, "ansible_collections", "kernelnic", "kni")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest process made it first
            os.symlink(REPO_ROOT, link)
    if COLLECTION_ROOT not in sys.path:
        sys.path.insert(0, COLLECTION_ROOT)


_ensure_collection_path()
