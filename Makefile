# The two commands README promises: `make demo` (set up + main job) and `make test`.
VENV ?= .venv
EDGESR := $(VENV)/bin/edgesr

.PHONY: setup demo test test-fast bench quality data
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

demo: setup
	$(EDGESR) export --model ecbsr --format tflite --force
	$(EDGESR) verify --model ecbsr

test: setup
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow"

bench: setup
	$(VENV)/bin/python -m benchmarks.publish

quality: setup
	$(VENV)/bin/python -m benchmarks.quality

data:
	bash scripts/training_data.sh
