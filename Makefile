# Audio-Level Music Generation — one-command set-up, tests, notebooks and the HTML book.
#
# The environment: an active virtualenv ($VIRTUAL_ENV) or conda env (other than base) when there
# is one, otherwise ./.venv, created on first use. Installation is redone when pyproject.toml changes.

PYTHON ?= python3
ifneq ($(VIRTUAL_ENV),)
  ENV_DIR := $(VIRTUAL_ENV)
else ifneq ($(filter-out base,$(CONDA_DEFAULT_ENV)),)
  ENV_DIR := $(CONDA_PREFIX)
else
  ENV_DIR := .venv
endif
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.course-lib-installed
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help install course test lab notebooks book bench gpu-check lint doctor clean assignments

help:
	@echo "make course     install, execute every notebook (tiny scale), build the HTML book in build/book/"
	@echo "make test       install, then lint + unit tests + nbval on every notebook"
	@echo "make lab        JupyterLab on notebooks/"
	@echo "make notebooks  re-execute every notebook and save its outputs in place"
	@echo "make bench      run the benchmarks: a table of ratios against the references, benchmarks/results.json"
	@echo "make gpu-check  on a CUDA machine: the tests marked cuda, then the benchmarks"
	@echo "make doctor     check the installation"
	@echo "make assignments  generate the assignments' student versions (assignments/release/; see assignments/INSTRUCTORS.md)"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(ENV_DIR)
	$(PY) -m pip install -e ".[dev]"
	@# nbgrader (for the assignments' command-line grading) also installs JupyterLab panels students do not need
	$(PY) -m jupyter labextension disable --level=sys_prefix @jupyter/nbgrader
	$(PY) -m jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader \
		nbgrader.server_extensions.assignment_list nbgrader.server_extensions.course_list \
		nbgrader.server_extensions.validate_assignment
	$(PY) -m course_lib doctor
	@touch $@

doctor: $(STAMP)
	$(PY) -m course_lib doctor

test: $(STAMP)
	$(PY) -m ruff check course_lib tests benchmarks tools
	COURSE_SCALE=tiny OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadscope $(NBVAL) tests notebooks

notebooks: $(STAMP)
	COURSE_SCALE=tiny OMP_NUM_THREADS=1 $(PY) tools/notebooks.py run notebooks/*.ipynb

# Executes every notebook (not saved in place: build/book-source/), then builds the book from those outputs.
course: $(STAMP)
	COURSE_SCALE=tiny OMP_NUM_THREADS=1 $(PY) tools/notebooks.py book --execute notebooks/*.ipynb --assignments assignments/release/*/*.ipynb --out build/book
	@echo "Open build/book/index.html in a browser (it needs no network)."

# The student versions of the graded assignments, from their instructor sources (nbgrader generate_assignment).
# `make test` checks that they are up to date, that the solutions get every point and the student versions none.
assignments: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m course_grading release

# The Jupyter Book (book/_config.yml) from the notebooks' committed outputs; nothing is executed. About 20 s.
book: $(STAMP)
	$(PY) tools/notebooks.py book notebooks/*.ipynb --assignments assignments/release/*/*.ipynb --out build/book
	@echo "Open build/book/index.html in a browser (it needs no network)."

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/suite.py

gpu-check: $(STAMP)
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check needs a CUDA GPU: torch sees none')"
	COURSE_DEVICE=cuda $(PY) -m pytest -m cuda -v tests
	COURSE_DEVICE=cuda $(MAKE) bench

lint: $(STAMP)
	$(PY) -m ruff check course_lib tests benchmarks tools
	$(PY) -m ruff format --check course_lib tests benchmarks tools

clean:
	rm -rf build .pytest_cache
