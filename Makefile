# Two commands do all the set-up (see README.md):
#   make demo   - create .venv, install, prepare the embedded data, pretrain on it
#   make test   - create/update .venv with the test extras, run the whole test suite
# Each step leaves a stamp file, so a second run reuses what is installed and prepared.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.14.1 and torchvision 0.29.1 are what this machine's pip finds locally; a GPU host may
# already have its own torch (override with `make TORCH= install`).
TORCH ?= torch==2.14.1 torchvision==0.29.1
DATA := data
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: install install-test data demo test clean-data

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
data: $(DATA)/.prepared

$(VENV)/.installed: requirements.txt requirements-cpu.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(if $(TORCH),$(PIP) $(TORCH))
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PIP) -r requirements-test.txt
	touch $@

# The embedded default: a synthetic C4-shaped corpus, a WordPiece tokenizer trained on it, the
# corpus converted to MDS by the same script that converts C4, and synthetic GLUE tasks.
# Changed generator code re-runs prepare, which redoes only the steps whose recorded settings changed.
$(DATA)/.prepared: $(VENV)/.installed $(wildcard src/synthetic/*.py) src/convert_dataset.py
	$(PY) -m src.synthetic.prepare --out_dir $(DATA)
	touch $@

# yamls/test/main.yaml runs 150 batches (a quick check, under 2 minutes); the demo trains longer so that
# its final masked accuracy passes twice the most-frequent-token guess (~300+ batches needed).
DEMO_ARGS ?= max_duration=600ba

demo: $(VENV)/.installed $(DATA)/.prepared
	$(VENV)/bin/composer main.py yamls/test/main.yaml $(DEMO_ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest tests

clean-data:
	rm -rf $(DATA)
