# Two entry points: `make demo` (simulate, fit, print the discovered model) and
# `make test` (the default test suite). Both create .venv on first use.
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; override for another build, e.g. make TORCH="torch>=2.2".
TORCH ?= torch==2.13.0

.PHONY: demo test test-all lint clean chromium

$(BIN)/spicedsl: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/spicedsl
	mkdir -p out
	$(BIN)/spicedsl simulate examples/q_learning.spice --sessions 100 --trials 100 --seed 1 \
		-o out/demo_data.csv
	$(BIN)/spicedsl fit examples/learning_rate.spice out/demo_data.csv -o out/demo --overwrite

# The HTML report test opens the report in headless Chromium (Debian's package, as root;
# elsewhere the test is skipped and says why).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: the report screenshot test will be skipped"

test: $(BIN)/spicedsl chromium
	$(BIN)/python -m pytest -q -n 2

test-all: $(BIN)/spicedsl chromium
	$(BIN)/python -m pytest -q -n 2 -m "slow or not slow"

lint: $(BIN)/spicedsl
	$(BIN)/ruff check spicedsl tests benchmarks
	$(BIN)/ruff format --check spicedsl tests benchmarks

clean:
	rm -rf $(VENV) out build dist
