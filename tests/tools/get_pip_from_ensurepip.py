# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for the pip bootstrap script that ansible-test downloads from a host we cannot reach.

ansible-test runs its cached ``get_pip_<version>.py`` inside each fresh sanity virtualenv with pip's
options and the packages to install (``pip==24.2`` ...). This does the same from PyPI: ensurepip
seeds pip from the interpreter's bundled wheel, then pip installs the requested packages.
"""

from __future__ import annotations

import subprocess
import sys

# Options only the real get-pip script understands.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> None:
    arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *arguments])


if __name__ == "__main__":
    main()
