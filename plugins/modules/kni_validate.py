#!/usr/bin/python
# Copyright: kernelnic.kni contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kni_validate
short_description: Check the variables of the kernelnic.kni.kni role before it changes anything
version_added: 0.1.0
description:
  - Checks the C(kni_) variables of the C(kernelnic.kni.kni) role with the rules of the modules and the service they
    end up in, and fails with one message that names every bad variable, for example
    C(kni_interfaces[1].mac), or C(kni_module_params) with C(min_scheduling_interval) not below
    C(max_scheduling_interval).
  - V(kni_module_params) is checked as M(kernelnic.kni.kni_kmod) checks O(kernelnic.kni.kni_kmod#module:params),
    V(kni_interfaces) as M(kernelnic.kni.kni_interface) checks its O(kernelnic.kni.kni_interface#module:interfaces)
    (names, backends, MACs, MTU fields together, uniqueness) and against V(kni_pump_max_interfaces), the pump
    settings as C(kni-pump) checks its own. What needs the host (a backend interface, an online CPU, the pump's
    current interfaces) is left to those modules.
  - Types are strict, since the role computes with these values and tests them in conditionals. On the command
    line, C(-e name=value) gives a string; JSON or YAML given to C(-e) keeps numbers and booleans.
  - The role runs it as its first task. It is a module rather than an action plugin so that the checks run the
    modules' own code where the modules run, with the same Python; it reads nothing on the host.
  - Changes nothing.
author:
  - kernelnic.kni contributors (@kernelnic)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kernelnic.kni.attributes.info_module
options:
  variables:
    description:
      - The role variables to check, by name. Names that are not variables of the role are errors.
    type: dict
    required: true
seealso:
  - module: kernelnic.kni.kni_kmod
  - module: kernelnic.kni.kni_interface
"""

EXAMPLES = r"""
- name: Check the interfaces and module parameters before a play changes anything
  kernelnic.kni.kni_validate:
    variables:
      kni_module_params: "{{ kni_module_params }}"
      kni_interfaces: "{{ kni_interfaces }}"
      kni_pump_max_interfaces: "{{ kni_pump_max_interfaces }}"
"""

RETURN = r"""
variables:
  description: The names of the variables checked.
  returned: always
  type: list
  elements: str
  sample: [kni_interfaces, kni_module_params, kni_pump_max_interfaces]
errors:
  description: One entry per problem, each starting with the variable or field it names.
  returned: failure
  type: list
  elements: str
  sample: ["kni_interfaces[1].mac: 'zz' is not a MAC address like 02:00:00:00:00:01"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.role_validate import check_variables  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={"variables": {"type": "dict", "required": True}},
        supports_check_mode=True,
    )
    checked, errors = check_variables(module.params["variables"])
    if errors:
        module.fail_json(
            msg=f"invalid kni role variables: {'; '.join(errors)}", errors=errors, variables=checked, changed=False
        )
    module.exit_json(changed=False, variables=checked)


if __name__ == "__main__":
    main()
