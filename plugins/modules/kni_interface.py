#!/usr/bin/python
# Copyright: kernelnic.kni contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kni_interface
short_description: Declare KNI interfaces of kni-pump and their Linux-side settings
version_added: 0.1.0
description:
  - Creates, changes and deletes KNI interfaces through the control socket of the C(kni-pump) service, and sets
    their Linux-side settings (admin state, promiscuous mode, all-multicast mode, IP addresses) with netlink.
  - Manages one interface (O(name) with the per-interface options at the top level) or a list (O(interfaces)).
  - The pump options (O(backend), O(mac), O(mtu), O(min_mtu), O(max_mtu), O(carrier), O(core)) go to C(kni-pump),
    one C(apply) request per interface. For an existing interface, the pump options left out keep their current
    values. C(kni-pump) recreates the network device when O(min_mtu), O(max_mtu) or O(core) change, which resets
    its Linux-side settings; the module then applies the requested ones again.
  - The Linux-side options (O(admin_state), O(promisc), O(allmulticast), O(addresses)) are applied after the pump
    options. Each one left out is not managed.
  - With O(adopt=true) the interface was created by a DPDK application; only the Linux-side options apply, the
    pump is not contacted, and a missing interface or one whose driver is not C(kni) is an error.
  - Every option is checked, against the pump's current state and the host too (backend interface present, CPU
    online, name not taken by a non-KNI interface), before anything changes; an error names the option, for
    example C(interfaces[1].mtu).
author:
  - kernelnic.kni contributors (@kernelnic)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kernelnic.kni.attributes
requirements:
  - pyroute2 (Debian package C(python3-pyroute2)) on the managed host, for the Linux-side options and O(adopt)
options:
  name:
    description:
      - The interface to manage, with the per-interface options below given at the top level.
      - Mutually exclusive with O(interfaces); one of the two is required.
    type: str
  interfaces:
    description:
      - The interfaces to manage, each a dictionary of the per-interface options. Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: The interface name (at most 15 characters).
        type: str
        required: true
      state:
        description: V(present) creates or changes the interface, V(absent) deletes it from C(kni-pump).
        type: str
        choices: [present, absent]
        default: present
      adopt:
        description:
          - The interface was created by a DPDK application; manage only its Linux-side settings. Its driver must
            be C(kni); see O(adopt).
        type: bool
        default: false
      backend:
        description:
          - Where C(kni-pump) sends and takes the frames; see O(backend).
        type: str
      mac:
        description: The MAC address; see O(mac).
        type: str
      mtu:
        description: The MTU; see O(mtu).
        type: int
      min_mtu:
        description: The smallest MTU the kernel accepts; see O(min_mtu).
        type: int
      max_mtu:
        description: The largest MTU the kernel accepts; see O(max_mtu).
        type: int
      carrier:
        description: The carrier policy; see O(carrier).
        type: str
        choices: ['on', 'off', follow]
      core:
        description: The CPU of the interface's kernel thread; see O(core).
        type: int
      admin_state:
        description: The administrative state; see O(admin_state).
        type: str
        choices: [up, down]
      promisc:
        description: Promiscuous mode; see O(promisc).
        type: bool
      allmulticast:
        description: All-multicast mode; see O(allmulticast).
        type: bool
      addresses:
        description: The IP addresses; see O(addresses).
        type: list
        elements: str
  exclusive:
    description:
      - With O(interfaces), delete the C(kni-pump) interfaces that are not listed. Adopted interfaces are never
        deleted.
    type: bool
    default: false
  socket:
    description:
      - The control socket of C(kni-pump).
      - A pump that does not answer within 30 seconds, closes the connection or answers outside its protocol is
        an error naming the socket.
    type: path
    default: /run/kni-pump/control.sock
  state:
    description:
      - V(present) creates or changes the interface, V(absent) deletes it from C(kni-pump).
      - Only with O(name); the default is V(present).
    type: str
    choices: [present, absent]
  adopt:
    description:
      - The interface was created by a DPDK application, not by C(kni-pump). Only O(admin_state), O(promisc),
        O(allmulticast) and O(addresses) apply; the pump is not contacted, and a missing interface is an error.
      - An interface whose driver (as C(ethtool -i) reports it) is not C(kni) is refused, and nothing changes.
      - Only with O(name); the default is V(false).
    type: bool
  backend:
    description:
      - Where C(kni-pump) sends the interface's frames and takes its incoming ones from. V(afpacket:<ifname>)
        bridges to a Linux interface with an C(AF_PACKET) socket, V(loopback) returns every frame, V(null) drops
        them.
      - Required to create an interface.
    type: str
  mac:
    description:
      - The MAC address, a unicast address like C(02:00:00:00:00:01). Left out, C(kni-pump) picks a locally
        administered one for a new interface and keeps it.
    type: str
  mtu:
    description:
      - The MTU, between O(min_mtu) and O(max_mtu), at most 2034 (C(kni-pump)'s 2048-byte buffers). A new interface
        gets 1500.
    type: int
  min_mtu:
    description: The smallest MTU the kernel accepts, 68 to 2034. A change recreates the interface.
    type: int
  max_mtu:
    description: The largest MTU the kernel accepts, 68 to 2034. A change recreates the interface.
    type: int
  carrier:
    description:
      - V(on) and V(off) set the carrier while the interface is up; V(follow) mirrors the backend's link.
        A new interface gets V(follow).
      - V(on) and V(off) may be given unquoted (YAML reads them as the booleans V(true) and V(false), which count
        as V(on) and V(off)).
    type: str
    choices: ['on', 'off', follow]
  core:
    description:
      - Bind the interface's kernel thread to this CPU (C(rte_kni) with C(kthread_mode=multiple)). A change
        recreates the interface.
    type: int
  admin_state:
    description: The administrative state of the link.
    type: str
    choices: [up, down]
  promisc:
    description: The link's promiscuous mode (the C(PROMISC) flag set by the administrator).
    type: bool
  allmulticast:
    description: The link's all-multicast mode (the C(ALLMULTI) flag set by the administrator).
    type: bool
  addresses:
    description:
      - The IPv4 and IPv6 addresses with prefix length, like C(192.0.2.1/24) or C(2001:db8::1/64). The link ends
        with exactly these; the others are removed, except IPv6 link-local addresses (C(fe80::/10)) that the kernel
        adds, which are left alone unless listed.
      - Left out, addresses are not managed; V([]) removes them all.
    type: list
    elements: str
notes:
  - The C(kni-pump) service must be running for interfaces without O(adopt); the C(kernelnic.kni.kni) role
    installs and starts it.
  - An interface a DPDK application created cannot be deleted with this module; stop the application instead.
seealso:
  - module: kernelnic.kni.kni_kmod
  - module: kernelnic.kni.kni_info
"""

EXAMPLES = r"""
- name: A KNI interface bridged to eth1, up, with an address
  kernelnic.kni.kni_interface:
    name: kni0
    backend: afpacket:eth1
    mac: "02:00:00:00:00:01"
    mtu: 1500
    carrier: follow
    admin_state: up
    addresses:
      - 192.0.2.1/24

- name: Exactly these two interfaces in kni-pump (any other one is deleted)
  kernelnic.kni.kni_interface:
    interfaces:
      - name: kni0
        backend: afpacket:eth1
        admin_state: up
        addresses: [192.0.2.1/24, 2001:db8::1/64]
      - name: kni1
        backend: loopback
        carrier: 'on'
        core: 1
        admin_state: up
        promisc: true
    exclusive: true

- name: Bring up an interface that a DPDK application created
  kernelnic.kni.kni_interface:
    name: vEth0_0
    adopt: true
    admin_state: up
    allmulticast: true
    addresses: [198.51.100.1/24]

- name: Delete an interface from kni-pump
  kernelnic.kni.kni_interface:
    name: kni1
    state: absent
"""

RETURN = r"""
interfaces:
  description:
    - Each interface of the task (and each one O(exclusive) deleted) after the task, as predicted in check mode.
    - The pump options appear for C(kni-pump) interfaces; the Linux-side ones when managed or with O(adopt).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The interface name.
      type: str
      sample: kni0
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    adopt:
      description: Whether the interface belongs to a DPDK application.
      type: bool
      sample: false
    backend:
      description: The pump backend.
      type: str
      sample: afpacket:eth1
    mac:
      description: The MAC address (null in check mode for a new interface without O(mac)).
      type: str
      sample: "02:00:00:00:00:01"
    mtu:
      description: The MTU.
      type: int
      sample: 1500
    min_mtu:
      description: The smallest MTU the kernel accepts.
      type: int
      sample: 68
    max_mtu:
      description: The largest MTU the kernel accepts.
      type: int
      sample: 2034
    carrier:
      description: The carrier policy.
      type: str
      sample: follow
    core:
      description: The CPU the kernel thread is bound to, or null.
      type: int
      sample: null
    admin_state:
      description: The administrative state of the link.
      type: str
      sample: up
    promisc:
      description: The promiscuous mode set by the administrator.
      type: bool
      sample: false
    allmulticast:
      description: The all-multicast mode set by the administrator.
      type: bool
      sample: false
    addresses:
      description: The link's addresses with prefix length.
      type: list
      elements: str
      sample: [192.0.2.1/24, fe80::ff:fe00:1/64]
actions:
  description: What the task did, or would do in check mode, in order.
  returned: always
  type: list
  elements: str
  sample:
    - "kni0: apply to kni-pump"
    - "kni0: add address 192.0.2.1/24"
    - "kni0: set up"
field:
  description: The option that made the task fail, like C(interfaces[1].backend).
  returned: failure because of invalid options
  type: str
  sample: interfaces[1].backend
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_run import (  # noqa: E402
    DEFAULT_SOCKET,
    InterfaceFailure,
    execute,
)

_INTERFACE_OPTIONS = {
    "backend": {"type": "str"},
    "mac": {"type": "str"},
    "mtu": {"type": "int"},
    "min_mtu": {"type": "int"},
    "max_mtu": {"type": "int"},
    "carrier": {"type": "str", "choices": ["on", "off", "follow"]},
    "core": {"type": "int"},
    "admin_state": {"type": "str", "choices": ["up", "down"]},
    "promisc": {"type": "bool"},
    "allmulticast": {"type": "bool"},
    "addresses": {"type": "list", "elements": "str"},
}


def main() -> None:
    item_options = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "adopt": {"type": "bool", "default": False},
        **_INTERFACE_OPTIONS,
    }
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "interfaces": {"type": "list", "elements": "dict", "options": item_options},
            "exclusive": {"type": "bool", "default": False},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
            "state": {"type": "str", "choices": ["present", "absent"]},
            "adopt": {"type": "bool"},
            **_INTERFACE_OPTIONS,
        },
        mutually_exclusive=[("name", "interfaces")],
        required_one_of=[("name", "interfaces")],
        supports_check_mode=True,
    )
    try:
        result = execute(module.params, module.check_mode, module._diff)
    except InterfaceFailure as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
