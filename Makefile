# Two commands do all the set-up: `make attack` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: attack test gate bench fuzz clean

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

# Byte-compiled first: where PYTHONDONTWRITEBYTECODE is set, every child would recompile every module.
bench: $(STAMP)
	$(BIN)/python -m compileall -q harness bench
	$(BIN)/python -m bench.run

# A longer hypothesis run over reader, decoder, flows and every analyzer; then atheris (libFuzzer) on the
# whole analyze path for FUZZ_SECONDS, seeded with the real corpus, if `pip install atheris` worked here.
FUZZ_SECONDS ?= 300
FUZZ_CORPUS := bench/out/fuzz-corpus
fuzz: $(STAMP)
	HARNESS_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/observe/test_fuzz.py
	@if $(BIN)/python -c "import atheris" 2>/dev/null; then \
		mkdir -p $(FUZZ_CORPUS) && cp -n ../shared/corpus/real/*.pcap* $(FUZZ_CORPUS)/ 2>/dev/null; \
		$(BIN)/python fuzz/fuzz_analyze.py -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 \
			-max_len=65536 $(FUZZ_CORPUS); \
	else echo "atheris not installed ($(BIN)/pip install atheris): hypothesis run only"; fi

clean:
	rm -rf $(VENV) captures/*.pcap captures/*.json reports/*.md reports/*.xml \
		$(filter-out reports/baseline.json,$(wildcard reports/*.json))
