#!/usr/bin/python
# Copyright: kernelnic.kni contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kni_kmod
short_description: Load, reconfigure and unload the rte_kni kernel module
version_added: 0.1.0
description:
  - Loads C(rte_kni) with the requested module parameters, or unloads it.
  - Compares the loaded module's parameters (C(/sys/module/rte_kni/parameters/*)) with the requested ones. The
    scheduling intervals are written live when their sysfs file is writable; any other difference needs a reload,
    which happens only with O(reload=true) because it removes every KNI interface. Without it the module fails and
    lists the differences, each as the parameter name, its loaded value and the wanted value.
  - Unloading and reloading are refused while KNI interfaces exist or C(/dev/kni) is open. The module never
    destroys KNI interfaces; stop the application that owns them (for example the C(kni-pump) service) first.
  - With O(persistent=true) it also writes C(/etc/modprobe.d/rte_kni.conf) (the non-default parameters) and
    C(/etc/modules-load.d/rte_kni.conf) (load at boot) atomically, or removes both with O(state=absent).
author:
  - kernelnic.kni contributors (@kernelnic)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kernelnic.kni.attributes
options:
  state:
    description:
      - V(present) loads the module (and reconciles its parameters), V(absent) unloads it.
    type: str
    choices: [present, absent]
    default: present
  params:
    description:
      - The module parameters. Every parameter left out takes its default, so the loaded module and the persistent
        configuration always describe the complete parameter set.
      - Only O(params.min_scheduling_interval), O(params.max_scheduling_interval) and
        O(params.idle_scheduling_interval) can change while the module is loaded.
      - Ignored with O(state=absent).
      - V(null) is the same as V({}).
      - The values V(on) and V(off) may be given unquoted (YAML reads them as the booleans V(true) and V(false),
        which count as V(on) and V(off)).
    type: dict
    default: {}
    suboptions:
      lo_mode:
        description: Loopback mode of the kernel threads (a DPDK test feature).
        type: str
        choices: [lo_mode_none, lo_mode_fifo, lo_mode_fifo_skb]
        default: lo_mode_none
      kthread_mode:
        description: V(single) runs one C(kni_single) thread per network namespace, V(multiple) one per interface.
        type: str
        choices: [single, multiple]
        default: single
      carrier:
        description: Carrier state of an interface when it is brought up.
        type: str
        choices: ['off', 'on']
        default: 'off'
      enable_bifurcated:
        description:
          - Bifurcated-driver mode. The kernel accepts only C(on); V(off) leaves the parameter out.
        type: str
        choices: ['off', 'on']
        default: 'off'
      strict:
        description:
          - Memory registration policy of this rte_kni (an extension of the DPDK ABI). V(required) refuses to
            create interfaces whose memory was not registered.
        type: str
        choices: [auto, required]
        default: auto
      multi_open:
        description:
          - Let several processes of a network namespace open C(/dev/kni), each owning the interfaces it creates
            (an extension of this rte_kni), for example a DPDK application beside kni-pump. V(off) leaves the
            parameter out, and a second open fails as with DPDK's module.
        type: str
        choices: ['off', 'on']
        default: 'off'
      min_scheduling_interval:
        description:
          - Shortest kernel thread sleep in microseconds, 0 to 1000000, below O(params.max_scheduling_interval).
        type: int
        default: 100
      max_scheduling_interval:
        description:
          - Longest kernel thread sleep in microseconds, 0 to 1000000, above O(params.min_scheduling_interval).
        type: int
        default: 200
      idle_scheduling_interval:
        description:
          - Longest kernel thread sleep after 100 ms without traffic, in microseconds, 0 to 1000000 (an extension
            of this rte_kni).
          - When not set, the module's own default applies and the loaded value is not compared.
        type: int
  reload:
    description:
      - Allow unloading and loading the module again to change parameters that cannot change at runtime.
      - A reload removes every KNI interface, so it is still refused while interfaces exist.
    type: bool
    default: false
  persistent:
    description:
      - Also manage C(/etc/modprobe.d/rte_kni.conf) and C(/etc/modules-load.d/rte_kni.conf), so the module loads
        at boot with the same parameters. With O(state=absent) both files are removed.
      - V(false) leaves both files alone.
    type: bool
    default: false
notes:
  - The module must be installed for the running kernel first, for example with M(kernelnic.kni.kni_dkms).
  - Parameters are passed to C(modprobe) explicitly, so stray options in C(/etc/modprobe.d) cannot override them;
    after loading, the module checks that the kernel runs with what was asked.
seealso:
  - module: kernelnic.kni.kni_dkms
  - module: kernelnic.kni.kni_info
"""

EXAMPLES = r"""
- name: Load rte_kni with carrier on, and at every boot
  kernelnic.kni.kni_kmod:
    params:
      carrier: 'on'
      kthread_mode: multiple
    persistent: true

- name: Shorten the kernel thread sleeps without a reload
  kernelnic.kni.kni_kmod:
    params:
      carrier: 'on'
      kthread_mode: multiple
      min_scheduling_interval: 20
      max_scheduling_interval: 50

- name: Switch to the FIFO loopback mode, reloading the module if no KNI interface exists
  kernelnic.kni.kni_kmod:
    params:
      lo_mode: lo_mode_fifo
    reload: true

- name: Unload rte_kni and drop its boot configuration
  kernelnic.kni.kni_kmod:
    state: absent
    persistent: true
"""

RETURN = r"""
loaded:
  description: Whether rte_kni is loaded after the task (as predicted in check mode).
  returned: success
  type: bool
  sample: true
params:
  description:
    - The parameters of the loaded module after the task (as predicted in check mode); empty when not loaded.
    - Values not set at load time show their defaults.
  returned: success
  type: dict
  sample:
    lo_mode: lo_mode_none
    kthread_mode: single
    carrier: 'on'
    enable_bifurcated: 'off'
    strict: auto
    multi_open: 'off'
    min_scheduling_interval: 100
    max_scheduling_interval: 200
    idle_scheduling_interval: 20000
actions:
  description: What the task did, or would do in check mode, in order.
  returned: always
  type: list
  elements: str
  sample:
    - write /etc/modprobe.d/rte_kni.conf
    - write /etc/modules-load.d/rte_kni.conf
    - load rte_kni lo_mode=lo_mode_none kthread_mode=single carrier=on strict=auto min_scheduling_interval=100
      max_scheduling_interval=200
interfaces:
  description: The KNI interfaces (ethtool driver C(kni)) found in the current network namespace.
  returned: always
  type: list
  elements: str
  sample: [vEth0_0]
errors:
  description: Every problem found in O(params).
  returned: failure because of invalid parameters
  type: list
  elements: str
  sample: ["min_scheduling_interval (300) must be below max_scheduling_interval (200)"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import ModuleHost  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod import (  # noqa: E402
    STATES,
    KmodFailure,
    execute,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import (  # noqa: E402
    BY_NAME,
    precheck_arguments,
)


def _params_spec() -> dict:
    spec = {}
    for name, parameter in BY_NAME.items():
        if parameter.is_interval:
            spec[name] = {"type": "int"}
            if parameter.default is not None:
                spec[name]["default"] = parameter.default
        else:
            spec[name] = {"type": "str", "choices": list(parameter.choices), "default": parameter.default}
    return spec


class KmodModule(AnsibleModule):
    """Checks O(params) before ansible-core validates the arguments (see precheck_arguments)."""

    precheck_error = None

    def _load_params(self) -> None:
        super()._load_params()
        self.precheck_error = precheck_arguments(self.params)


def main() -> None:
    module = KmodModule(
        argument_spec={
            "state": {"type": "str", "choices": list(STATES), "default": "present"},
            "params": {"type": "dict", "default": {}, "options": _params_spec(), "apply_defaults": True},
            "reload": {"type": "bool", "default": False},
            "persistent": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    if module.precheck_error:
        module.fail_json(msg=module.precheck_error)
    try:
        result = execute(ModuleHost(module), module.params, module.check_mode, module._diff)
    except KmodFailure as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
