# Two commands on a fresh machine; each makes its own environment.
#   make demo   restore one policy of three into a new Tune run, print the table
#   make test   the whole matrix (tox: torch-new, torch-old, tf2-old, torch-ray245, docs)
#   make docs   the documentation site, strict (any warning fails), into docs/_build/html
#   make typecheck  mypy with mypy.ini (also run by `make test`, in the torch-new cell)
PYTHON ?= python3
VENV   := .venv
TOOLS  := .venv-tools
DOCS   := .venv-docs
CELLS  ?= torch-new,torch-old,tf2-old,torch-ray245,docs

.PHONY: demo test test-quick typecheck bench docs clean

demo: $(VENV)/.installed
	$(VENV)/bin/python examples/restore_one_of_n.py $(ARGS)

# `--` only with ARGS: an empty `--` would replace every cell's default test list.
test: $(TOOLS)/.installed
	$(TOOLS)/bin/tox run -e $(CELLS) $(if $(ARGS),-- $(ARGS))

# One venv, both stacks, torch only, no slow end-to-end tests: the inner loop.
test-quick: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n 2 -m "not slow" $(ARGS)

# mypy.ini says what is checked and how strictly; mypy is pinned in the `test` extra.
typecheck: $(VENV)/.installed
	$(VENV)/bin/python -m mypy --config-file mypy.ini

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/read_one_policy.py

# -n: every reference must resolve; -W: any warning fails; --keep-going: list them all.
docs: $(DOCS)/.installed
	$(DOCS)/bin/sphinx-build -nW --keep-going -b html docs docs/_build/html

# torch is installed first and pinned: 2.13.0 is the CPU build served here.
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "torch==2.13.0"
	$(VENV)/bin/pip install -q -e ".[rllib,test]"
	touch $@

# The docs env imports the ...Partial classes for the API reference: rllib too.
$(DOCS)/.installed: setup.py
	$(PYTHON) -m venv $(DOCS)
	$(DOCS)/bin/pip install -q "torch==2.13.0"
	$(DOCS)/bin/pip install -q -e ".[rllib,docs]"
	touch $@

$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "tox>=4,<5"
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) $(DOCS) .tox build *.egg-info docs/_build docs/generated
