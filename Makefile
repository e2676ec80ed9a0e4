VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt tests/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: run test bench check clean

$(STAMP): requirements.txt tests/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: $(STAMP)
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

# make check URL=http://127.0.0.1:8000/v1 [MODEL=...] [KEY=...] [CHECK_ARGS=--runs 10]
# the key goes through the environment: make prints commands, ps shows arguments
check: export CHECK_API_KEY := $(or $(KEY),$(CHECK_API_KEY))
check: $(STAMP)
	@test -n "$(URL)" || { echo "usage: make check URL=... [MODEL=...] [KEY=...]" >&2; exit 2; }
	$(PY) -m proxy.check '$(URL)' $(if $(MODEL),--model '$(MODEL)') $(CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
