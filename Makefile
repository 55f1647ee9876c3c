# Two commands set everything up: `make demo` and `make test`.
# CPU-only machines: `make demo CPU=1` installs torch / torchvision from PyTorch's CPU wheel index
# (no CUDA libraries: ~1 GB instead of ~6 GB); the rest of requirements.lock is unchanged.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.robustune-installed
CPU ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
CUDA_ONLY := ^(nvidia-|cuda-|triton==)
UV_VERSION ?= 0.13.8
UV := $(VENV)/bin/uv
# $(call install,ARGS): uv pip install ARGS into the venv, pip install ARGS if uv is missing or fails
install = if test -x $(UV); then $(UV) pip install --python $(PY) $(1) || $(PY) -m pip install $(1); \
	else $(PY) -m pip install $(1); fi

.PHONY: demo test test-all bench check-report clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== installing into $(VENV) (a few minutes on a first install)"
	$(PY) -m pip install --upgrade "pip>=24"
	# uv installs the lock much faster than pip (benchmarks/install_speed.py, docs/benchmarks.md);
	# pip is the fallback when uv cannot be installed or fails
	-$(PY) -m pip install -q "uv==$(UV_VERSION)"
ifeq ($(CPU),1)
	@echo "== CPU-only torch from $(TORCH_CPU_INDEX)"
	$(call install,--index-url $(TORCH_CPU_INDEX) $$(grep -E '^(torch|torchvision)==' requirements.lock))
	grep -vE '$(CUDA_ONLY)' requirements.lock > $(VENV)/requirements-cpu.txt
	$(call install,-r $(VENV)/requirements-cpu.txt)
else
	$(call install,-r requirements.lock)
endif
	# AutoAttack components; --no-deps keeps its unused `requests~=2.25.1` pin out (docs/adversarial-evaluation.md)
	$(PY) -m pip install --no-deps torchattacks==3.5.1
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "== installed: $(VENV)/bin/robustune"

demo: $(STAMP)
	$(VENV)/bin/robustune demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# Renders runs/demo/report.html in headless Chromium (Debian: apt-get install chromium) → report.png
check-report:
	bash scripts/screenshot_report.sh runs/demo/report.html runs/demo/report.png 1280x2000

clean:
	rm -rf $(VENV) runs .pytest_cache
