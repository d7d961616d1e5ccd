#!/usr/bin/python
# Copyright: kernelnic.kni contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kni_dkms
short_description: Build and install the rte_kni kernel module with DKMS
version_added: 0.1.0
description:
  - Adds the rte_kni source tree to DKMS, then builds and installs the module for the running kernel and every
    installed kernel that has headers, or for an explicit list of kernels. With O(state=absent) it removes the
    module from DKMS.
  - >-
    Runs C(dkms add), C(dkms build), C(dkms install), C(dkms remove) and C(dkms status); reads the status output
    of both DKMS 2.x (C(rte_kni, 1.0, <kernel>, <arch>: installed)) and DKMS 3.x (C(rte_kni/1.0, ...)).
  - Missing kernel headers fail the task before anything changes, and the message names the package to install
    (C(linux-headers-<kernel>) on Debian).
  - Detects Secure Boot (C(mokutil --sb-state); without mokutil the state is C(unknown)) and reports the key and
    certificate DKMS signs with (C(mok_signing_key) and C(mok_certificate) in C(/etc/dkms/framework.conf), by
    default C(/var/lib/dkms/mok.key) and C(/var/lib/dkms/mok.pub)). With Secure Boot on and a certificate that is
    missing or not enrolled, the task warns; enrolment needs C(mokutil --import) and the console at the next boot.
  - Checks that the module C(modinfo -k <kernel> rte_kni) finds has the kernel's release as its vermagic.
author:
  - kernelnic.kni contributors (@kernelnic)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kernelnic.kni.attributes
options:
  state:
    description:
      - V(present) adds, builds and installs the module; V(absent) removes it from DKMS.
    type: str
    choices: [present, absent]
    default: present
  version:
    description:
      - The DKMS module version (C(PACKAGE_VERSION) in C(dkms.conf)).
      - With O(state=present) it defaults to the version in O(source)'s C(dkms.conf); one of the two is required.
      - With O(state=absent) and no version, every version of rte_kni is removed.
      - Letters, digits and C(. _ + ~ -) only, starting with a letter or digit (the same applies to
        C(PACKAGE_VERSION) when it is read from O(source)).
    type: str
  source:
    description:
      - The rte_kni source tree (the collection's C(kmod/) directory) with its C(dkms.conf). DKMS copies a tree
        found elsewhere to C(/usr/src/rte_kni-<version>).
      - Defaults to C(/usr/src/rte_kni-<version>). Only read when the version is not yet added to DKMS.
    type: path
  kernels:
    description:
      - Kernel releases to build for, instead of the running kernel and every installed kernel with headers.
      - All of them must have headers. With O(state=absent), only these kernels' builds are removed.
      - Each is a release as C(uname -r) prints it; letters, digits and C(. _ + ~ -) only.
    type: list
    elements: str
notes:
  - DKMS does not notice new sources under an already added version; bump C(PACKAGE_VERSION) for a new release.
  - O(state=absent) leaves the source tree in C(/usr/src) in place.
seealso:
  - module: kernelnic.kni.kni_kmod
  - module: kernelnic.kni.kni_info
"""

EXAMPLES = r"""
- name: Build rte_kni for the running kernel and every kernel with headers
  kernelnic.kni.kni_dkms:
    source: /usr/src/rte_kni-1.0

- name: Build rte_kni 1.0 for one kernel only
  kernelnic.kni.kni_dkms:
    version: "1.0"
    kernels:
      - 6.1.0-56-amd64

- name: Remove every rte_kni version from DKMS
  kernelnic.kni.kni_dkms:
    state: absent
"""

RETURN = r"""
version:
  description: The rte_kni version handled (null with O(state=absent) and no O(version)).
  returned: always
  type: str
  sample: "1.0"
source:
  description: The source tree used with O(state=present).
  returned: always
  type: str
  sample: /usr/src/rte_kni-1.0
commands:
  description: The DKMS commands run, or that would run in check mode, in order.
  returned: always
  type: list
  elements: str
  sample:
    - dkms add -m rte_kni -v 1.0
    - dkms build -m rte_kni -v 1.0 -k 6.1.0-56-amd64
    - dkms install -m rte_kni -v 1.0 -k 6.1.0-56-amd64
kernels:
  description: One entry per kernel built for (O(state=present)).
  returned: always
  type: list
  elements: dict
  contains:
    kernel:
      description: The kernel release.
      type: str
      sample: 6.1.0-56-amd64
    state:
      description: The DKMS state after the task (as predicted in check mode), C(absent) when not built.
      type: str
      sample: installed
    before:
      description: The DKMS state before the task (null when not built).
      type: str
      sample: built
    vermagic:
      description: The vermagic of the module C(modinfo -k) finds, null when it was not checked.
      type: str
      sample: 6.1.0-56-amd64 SMP preempt mod_unload modversions
    vermagic_ok:
      description: Whether the vermagic starts with the kernel release, null when it was not checked.
      type: bool
      sample: true
    module_path:
      description: The file C(modinfo -k) finds.
      type: str
      sample: /lib/modules/6.1.0-56-amd64/updates/dkms/rte_kni.ko
skipped_kernels:
  description: Installed kernels without headers that the module was not built for.
  returned: always
  type: list
  elements: str
  sample: [5.10.0-32-amd64]
secure_boot:
  description: Secure Boot state and the key and certificate DKMS signs with.
  returned: when O(state=present)
  type: dict
  contains:
    state:
      description: V(enabled), V(disabled) or V(unknown) (no mokutil, or no EFI).
      type: str
      sample: disabled
    detail:
      description: The first line of C(mokutil --sb-state), or why the state is unknown.
      type: str
      sample: SecureBoot disabled
    signing_key:
      description: The private key DKMS signs with.
      type: str
      sample: /var/lib/dkms/mok.key
    certificate:
      description: The certificate that must be enrolled as a MOK.
      type: str
      sample: /var/lib/dkms/mok.pub
    certificate_exists:
      description: Whether the certificate exists yet (DKMS creates key and certificate on first signing).
      type: bool
      sample: true
    key_enrolled:
      description: Whether C(mokutil --test-key) reports the certificate as enrolled; null unless Secure Boot is on.
      type: bool
      sample: true
missing_headers:
  description: The kernels without headers.
  returned: failure because of missing headers
  type: list
  elements: str
  sample: [6.1.0-56-amd64]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.dkms import (  # noqa: E402
    STATES,
    DkmsFailure,
    execute,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import ModuleHost  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": list(STATES), "default": "present"},
            "version": {"type": "str"},
            "source": {"type": "path"},
            "kernels": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    try:
        result = execute(ModuleHost(module), module.params, module.check_mode, module._diff, module.warn)
    except DkmsFailure as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
