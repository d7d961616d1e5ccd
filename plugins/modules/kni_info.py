#!/usr/bin/python
# Copyright: kernelnic.kni contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kni_info
short_description: Report the state of rte_kni and its KNI interfaces
version_added: 0.1.0
description:
  - Reports whether C(rte_kni) is loaded and with which parameters, whether C(/dev/kni) exists, the DKMS status of
    rte_kni per kernel, the KNI interfaces with their counters, and the state of the ring-pump service.
  - KNI interfaces are the network interfaces of the current network namespace whose ethtool driver (the
    C(SIOCETHTOOL) C(ETHTOOL_GDRVINFO) ioctl, as C(ethtool -i)) is rte_kni's (C(kni)).
  - Changes nothing.
author:
  - kernelnic.kni contributors (@kernelnic)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kernelnic.kni.attributes.info_module
options:
  service:
    description:
      - The systemd unit whose state is reported as the ring-pump service.
    type: str
    default: kni-pump
seealso:
  - module: kernelnic.kni.kni_kmod
  - module: kernelnic.kni.kni_dkms
"""

EXAMPLES = r"""
- name: Look at the KNI host
  kernelnic.kni.kni_info:
  register: kni

- name: Show the KNI interfaces and their receive counters
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.statistics.rx_packets }} packets received"
  loop: "{{ kni.interfaces }}"
"""

RETURN = r"""
kernel:
  description: The running kernel release.
  returned: always
  type: str
  sample: 6.1.0-56-amd64
module:
  description: The rte_kni kernel module.
  returned: always
  type: dict
  contains:
    loaded:
      description: Whether rte_kni is loaded.
      type: bool
      sample: true
    params:
      description: The known parameters, normalised (a string parameter that was not set shows its default).
      type: dict
      sample: {carrier: 'on', lo_mode: lo_mode_none, min_scheduling_interval: 100}
    raw_params:
      description: Every file under C(/sys/module/rte_kni/parameters) with its content.
      type: dict
      sample: {carrier: 'on', lo_mode: (null)}
    refcnt:
      description: The module's reference count (non-zero while C(/dev/kni) is open); null when not loaded.
      type: int
      sample: 1
    version:
      description: The module's C(MODULE_VERSION), null when not loaded.
      type: str
      sample: "1.0"
dev_kni:
  description: Whether C(/dev/kni) exists.
  returned: always
  type: bool
  sample: true
dkms:
  description: The DKMS status of rte_kni.
  returned: always
  type: dict
  contains:
    available:
      description: Whether the C(dkms) command exists.
      type: bool
      sample: true
    entries:
      description: One entry per C(dkms status) line for rte_kni.
      type: list
      elements: dict
      contains:
        version:
          description: The module version.
          type: str
          sample: "1.0"
        kernel:
          description: The kernel release, null for an added but unbuilt version.
          type: str
          sample: 6.1.0-56-amd64
        arch:
          description: The architecture, null for an added but unbuilt version.
          type: str
          sample: x86_64
        state:
          description: C(added), C(built), C(installed) or C(installed-weak).
          type: str
          sample: installed
        note:
          description: Whatever DKMS printed after the state, such as a warning.
          type: str
          sample: ""
    problems:
      description: Lines of C(dkms status) output that are not status lines (broken trees, errors).
      type: list
      elements: str
      sample: []
interfaces:
  description: The KNI interfaces.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The interface name.
      type: str
      sample: vEth0_0
    mtu:
      description: The MTU.
      type: int
      sample: 1500
    mac:
      description: The MAC address.
      type: str
      sample: 02:00:00:00:00:01
    operstate:
      description: The operational state from sysfs.
      type: str
      sample: up
    up:
      description: Whether the interface is administratively up.
      type: bool
      sample: true
    carrier:
      description: Whether the interface has carrier; null while it is down (the kernel refuses the read).
      type: bool
      sample: true
    statistics:
      description: The counters under C(/sys/class/net/<if>/statistics).
      type: dict
      sample: {rx_packets: 10, tx_packets: 12, rx_bytes: 1200, tx_bytes: 1440}
service:
  description: The ring-pump service.
  returned: always
  type: dict
  contains:
    name:
      description: The unit name (O(service)).
      type: str
      sample: kni-pump
    state:
      description: The output of C(systemctl is-active), or C(unknown) without systemd.
      type: str
      sample: active
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import ModuleHost  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.info import DEFAULT_SERVICE, gather  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={"service": {"type": "str", "default": DEFAULT_SERVICE}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **gather(ModuleHost(module), module.params["service"]))


if __name__ == "__main__":
    main()
