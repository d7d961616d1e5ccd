# SPDX-License-Identifier: GPL-3.0-or-later
# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
# Both set up what they need on a Debian 12 host as root and skip what is already there.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
SANITY_ROOT := .cache/sanity/ansible_collections/kernelnic/kni
export KNI_CACHE ?= /var/cache/kernelnic-kni

.PHONY: demo test setup venv lint unit sanity ansible-lint kernel-tests integration pump-tests images molecule pyroute2-compat clean

demo: setup venv
	$(VPY) -m tests.vmharness demo

test: setup venv
	$(MAKE) --no-print-directory lint unit sanity ansible-lint kernel-tests

setup:
	$(PYTHON) -m tests.vmharness setup

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit:
	$(VPY) -m pytest tests/unit

# ansible-test needs the collection under ansible_collections/<namespace>/<name>/: copy what git would ship.
# ansible-test seeds pip in its sanity virtualenvs with a script from a host outside the package
# registries; tests/tools/get_pip_from_ensurepip.py takes its place in ansible-test's cache.
ANSIBLE_TEST_DIR = $(VENV)/lib/python3.11/site-packages/ansible_test
sanity:
	pip_version=$$(grep -oP "pip='\K[0-9.]+" $(ANSIBLE_TEST_DIR)/_internal/python_requirements.py) && \
	  mkdir -p ~/.ansible/test/cache && \
	  cp tests/tools/get_pip_from_ensurepip.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t $(SANITY_ROOT)
	cd $(SANITY_ROOT) && git init -q && git add -A && \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-test sanity --venv --python 3.11 --color no

ansible-lint:
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-lint --profile production

kernel-tests:
	$(VPY) -m pytest -m kernel tests/kernel

# The Ansible integration targets, run by ansible-playbook inside a 6.1 guest (slow under emulation: ~30 min).
integration: setup venv
	KNI_ANSIBLE_INTEGRATION=1 KNI_KERNELS=6.1 KNI_GUEST_TIMEOUT=3600 $(VPY) -m pytest -m kernel tests/kernel

# Only the kni-pump guest tests (make test runs them too, with the rest of the guest session).
pump-tests: setup venv
	KNI_GUEST_TESTS=tests/guest/test_pump_kni.py $(VPY) -m pytest -m kernel tests/kernel

# Debian disk images (bullseye 5.10, bookworm 6.1, trixie 6.12) booting systemd, built with mmdebstrap and
# cached under $(KNI_CACHE)/images (about 7 minutes each); a second run only checks them.
IMAGE_SUITES ?= bullseye bookworm trixie
images:
	$(PYTHON) -m tests.vmharness vm build $(addprefix --suite ,$(IMAGE_SUITES))

# The molecule scenario (molecule/default) on the three image VMs, one platform at a time so the host runs
# one TCG guest. Deliberately not part of `make test`: building the images takes minutes per suite and each
# platform's boot and converge under emulation many more, beyond CI's time budget.
MOLECULE_PLATFORMS ?= kni-bullseye kni-bookworm kni-trixie
COLLECTION_LINK := .collection-root/ansible_collections/kernelnic/kni
molecule: IMAGE_SUITES = $(patsubst kni-%,%,$(MOLECULE_PLATFORMS))
molecule: images venv
	test -L $(COLLECTION_LINK) || { mkdir -p $(dir $(COLLECTION_LINK)) && ln -s $(CURDIR) $(COLLECTION_LINK); }
	for platform in $(MOLECULE_PLATFORMS); do \
	  ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.collection-root PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	    molecule test --platform-name $$platform || exit 1; \
	done

# kni_interface's host network-namespace tests (root, no kernel module) against the python3-pyroute2 that Debian
# ships to managed hosts: bullseye 0.5.14, bookworm 0.7.2, trixie 0.7.7 (`make unit` runs them with the venv's).
PYROUTE2_SUITES ?= bullseye bookworm trixie
pyroute2-compat: venv
	for suite in $(PYROUTE2_SUITES); do \
	  dir=$(CURDIR)/.cache/pyroute2/$$suite; \
	  if [ ! -d $$dir/pkg ]; then \
	    rm -rf $$dir && mkdir -p $$dir && (cd $$dir && apt-get download -q python3-pyroute2/$$suite) && \
	    dpkg -x $$dir/python3-pyroute2_*.deb $$dir/deb && mv $$dir/deb/usr/lib/python3/dist-packages $$dir/pkg || exit 1; \
	  fi; \
	  PYTHONPATH=$$dir/pkg $(VPY) -c "import importlib.metadata as m, pyroute2; \
	    assert pyroute2.__file__.startswith('$$dir/'), pyroute2.__file__; print('$$suite: pyroute2', m.version('pyroute2'))" && \
	  PYTHONPATH=$$dir/pkg $(VPY) -m pytest -q -p no:cacheprovider tests/unit/plugins/modules/test_kni_interface_netns.py \
	    || exit 1; \
	done

clean:
	rm -rf .cache .collection-root
