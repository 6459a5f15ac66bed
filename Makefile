# Set-up and everyday commands. Everything installs into .venv through constraints.txt
# (the tested versions: torch 2.14.1, torchvision 0.29.1, avalanche-lib 0.6.0, ...).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Data root: $LSS_CL_DATA if set, else ../shared/data when present, else ./data.
export LSS_CL_DATA ?= $(if $(wildcard ../shared/data),../shared/data,data)

.PHONY: install demo dashboard test bench-train clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/lss-cl data info --dataset cifar10
	$(VENV)/bin/lss-cl run scenarios/split_cifar10_quick.yaml --strategy lss --seeds 0 --out runs --resume
	$(VENV)/bin/lss-cl compare runs/split_cifar10_quick

dashboard: install
	$(VENV)/bin/lss-cl dashboard --runs runs

test: install
	@rc=0; $(PY) -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure"; fi; \
	exit $$rc

bench-train: install
	$(PY) bench/train_convnet.py

clean:
	rm -rf $(VENV) .pytest_cache
