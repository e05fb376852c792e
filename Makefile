# Two commands set up a fresh machine:
#   make demo   installs ftjob and fine-tunes the bundled quickstart on this machine
#   make test   installs ftjob with its test dependencies and runs the whole suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Every package of the dev/test environment at the version the tests passed with; the images
# install from it too. pyproject.toml keeps compatible ranges for users.
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-unit gpu-wheels bench-trainer bench-memory bench-cluster bench-operator bench-kubeflow bench-api-costs bench-validate bench-fidelity crd training-args binaries cluster-up cluster-down lock deps-upgrade

install:
	$(PIP) install --quiet --disable-pip-version-check -c $(LOCK) -e ".[dev]"

demo: install
	$(PYTHON) examples/seed_model_cache.py
	HF_HUB_OFFLINE=1 ftjob run examples/quickstart.yaml

test: install binaries
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PYTHON) -m pytest -q -p no:cacheprovider

test-unit: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m "not slow and not cluster"

bench-trainer: install
	$(PYTHON) -m bench.trainer_bench

bench-memory: install
	$(PYTHON) -m bench.memory_bench

# The Python packages bench/gpu_check.sh needs beyond what the GPU machine's image holds
# (PyTorch, transformers, accelerate, peft, pyarrow, scikit-learn, tensorboard are there), at
# the lock's versions, as wheels for its Python 3.12: that machine has no internet, so they
# travel with the repository copy (.gpu-wheels is ignored by git).
GPU_WHEELS := .gpu-wheels
GPU_PACKAGES := datasets dill multiprocess trl hjson pydantic pydantic-core annotated-types \
	typing-inspection
gpu-wheels:
	mkdir -p $(GPU_WHEELS)
	for package in $(GPU_PACKAGES); do grep -i "^$$package==" $(LOCK) | cut -d' ' -f1; \
		done > $(GPU_WHEELS)/requirements.txt
	$(PIP) download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_WHEELS) -r $(GPU_WHEELS)/requirements.txt
	# DeepSpeed publishes only a source archive; built without its compiled ops it is a
	# wheel for any platform (the ops are built just in time where CUDA is).
	$(PIP) wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		-w $(GPU_WHEELS) $$(grep -i "^deepspeed==" $(LOCK) | cut -d' ' -f1)

bench-validate: install
	$(PYTHON) -m bench.validate_bench

bench-fidelity: install
	$(PYTHON) examples/seed_model_cache.py
	$(PYTHON) -m bench.fidelity_bench

crd:
	ftjob crd > crds/finetunejobs.ftjob.dev.yaml
	cp crds/finetunejobs.ftjob.dev.yaml charts/ftjob/files/

# The TrainingArguments table spec validation reads (so the operator needs no transformers);
# a test fails when it differs from the installed transformers.
training-args:
	$(PYTHON) -c "from ftjob.api import training_args as t; import json; t.TABLE.write_text(json.dumps(t.generate_table(), indent=1, sort_keys=True) + '\n')"

# `lock` re-resolves after pyproject.toml changed, keeping every other pin; `deps-upgrade`
# moves everything to the newest versions the ranges allow, regenerates the committed tables
# and runs the fast tests: review `git diff`, then commit the bump on its own.
UV_COMPILE = $(PYTHON) -m uv pip compile pyproject.toml --extra dev --universal --quiet \
	--custom-compile-command "make lock" -o $(LOCK)

lock:
	$(PIP) install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV_COMPILE)

deps-upgrade:
	$(PIP) install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV_COMPILE) --upgrade
	$(MAKE) install training-args crd test-unit

binaries:
	bash hack/build-binaries.sh

# A dev cluster in .cluster/ (kubeconfig .cluster/kubeconfig): control plane, fake GPU nodes
# and SeaweedFS. Idempotent; cluster-down stops only what cluster-up started.
cluster-up:
	$(PYTHON) -m tests.support.cluster up

cluster-down:
	$(PYTHON) -m tests.support.cluster down

bench-cluster:
	$(PYTHON) -m bench.cluster_bench

bench-operator: binaries
	$(PYTHON) -m bench.operator_bench

bench-kubeflow: binaries
	$(PYTHON) -m bench.kubeflow_bench

bench-api-costs: binaries
	$(PYTHON) -m bench.api_costs
