# Two commands on a fresh machine; each makes its own environment.
#   make demo   restore one policy of three into a new Tune run, print the table
#   make test   the whole matrix (tox: torch-new, torch-old, tf2-old, torch-ray245)
PYTHON ?= python3
VENV   := .venv
TOOLS  := .venv-tools
CELLS  ?= torch-new,torch-old,tf2-old,torch-ray245

.PHONY: demo test test-quick bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/python examples/restore_one_of_n.py $(ARGS)

# `--` only with ARGS: an empty `--` would replace every cell's default test list.
test: $(TOOLS)/.installed
	$(TOOLS)/bin/tox run -e $(CELLS) $(if $(ARGS),-- $(ARGS))

# One venv, both stacks, torch only, no slow end-to-end tests: the inner loop.
test-quick: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n 2 -m "not slow" $(ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/read_one_policy.py

# torch is installed first and pinned: 2.13.0 is the CPU build served here.
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "torch==2.13.0"
	$(VENV)/bin/pip install -q -e ".[rllib,test]"
	touch $@

$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "tox>=4,<5"
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) .tox build *.egg-info
