# The README's two commands: `make demo` and `make test`.
PY := .venv/bin/python
MODELS ?= mlp cnn

.PHONY: setup lock demo train up down status bench loadtest test test-fast lint format schema clean

# .venv from requirements.lock, exactly; .venv-clients/ (the official v2 test clients).
setup:
	@bash scripts/setup.sh

# Re-resolve requirements.lock and friends after a pyproject.toml change (uv; see the script).
lock:
	@bash scripts/lock.sh

# Train both frameworks, then a short Locust sweep (it brings both backends, the gateway
# and nginx up, measures, writes reports/<timestamp>/, prints the headline, stops all).
demo: setup train
	$(PY) -m loadtest --models digits-mlp --concurrency 1,16 --repeats 1 --duration 3 --cap 4 --warmup 0.5 --slo-p99-ms 50

# The full sweep; override e.g. LOADTEST_ARGS="--repeats 3 --workers 2 --pin-cpus auto".
LOADTEST_ARGS ?= --models digits-mlp,digits-cnn --concurrency 1,4,16,64 --duration 10 --repeats 3
loadtest: setup
	$(PY) -m loadtest $(LOADTEST_ARGS)

# Every run also writes the torch.export program (.pt2) beside TorchScript, checked for parity.
# The AOTInductor package is left out here (TRAIN_ARGS=--aoti adds it): ~25 s of g++ per model
# on this CPU, and only Triton's torch_aoti loads it, on the device it was compiled for (GPU).
TRAIN_ARGS ?=
train: setup
	@for model in $(MODELS); do \
		$(PY) -m trainers --framework both --model $$model --runs-dir runs $(TRAIN_ARGS) || exit $$?; \
	done

up: setup
	$(PY) -m dualserve up

down: setup
	$(PY) -m dualserve down

status: setup
	$(PY) -m dualserve status

# The gateway vs the minimal Python proxy (the floor) vs direct, side by side; trains first.
bench: setup train
	$(PY) -m benchmarks.gateway

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest tests/unit

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy trainers backends gateway loadtest dualserve deploy

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

schema: setup
	$(PY) -c "from trainers.manifest import manifest_json_schema as s; print(s(), end='')" > model_store/manifest.schema.json

clean:
	rm -rf model_store/tensorflow model_store/torch model_store/torchserve model_store/reports \
		model_store/manifest.json model_store/.lock runs reports .pytest_cache
