# Two commands do all the set-up: `make attack` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: attack test gate bench clean

# The venv is rebuilt when missing or older than pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

attack: $(STAMP)
	$(BIN)/harness attack

test: $(STAMP)
	$(BIN)/python -m pytest

# Every scenario, then the release gate against the committed baseline (exit 1 on a regression).
gate: $(STAMP)
	$(BIN)/harness attack
	$(BIN)/harness gate --baseline reports/baseline.json --reports reports --junit reports/gate.junit.xml --markdown reports/gate.md

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) captures/*.pcap captures/*.json reports/*.md reports/*.xml \
		$(filter-out reports/baseline.json,$(wildcard reports/*.json))
