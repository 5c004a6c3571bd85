# Two commands do everything on a fresh machine, neither needs root:
#   make quickstart   install what training and evaluation need, then train and evaluate the toy model
#   make test         the same install, plus the test tools and the web demo test's browser, then the test suite
# `make setup` alone installs the runtime. An installed torch / mmcv that meets the requirements below is kept.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# what a missing (or unsuitable) torch is installed as; an installed torch inside TORCH_REQUIREMENT is kept
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_REQUIREMENT ?= torch>=2.1
# mmdet 3.3.0 accepts mmcv >= 2.0.0rc4, < 2.2.0; a missing one is built as MMCV_SPEC
MMCV_REQUIREMENT ?= mmcv>=2.0.0rc4,<2.2.0
MMCV_SPEC ?= mmcv==2.1.0
# mmcv 2.1.0 ships only as a source distribution; it is compiled against the installed torch.
MMCV_BUILD_ENV := CXX=$(CURDIR)/tools/install/cxx20.sh MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$$(nproc)
# exit status 0 when the installed distribution satisfies the requirement given as argument
SATISFIED := $(PYTHON) -c "import sys; from importlib.metadata import version; from packaging.requirements import Requirement; r = Requirement(sys.argv[1]); sys.exit(not r.specifier.contains(version(r.name), prereleases=True))"

.PHONY: setup setup-torch setup-mmcv test-deps test quickstart toy-few-shot

setup: setup-mmcv
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PYTHON) -c "import mmcv.ops, mmdet.models, mmpretrain.models, fiber_mmdet; print('fiber_mmdet', fiber_mmdet.__version__, 'ready')"

setup-torch:
	$(PIP) install -q "setuptools>=77,<81" wheel ninja numpy packaging
	@$(SATISFIED) '$(TORCH_REQUIREMENT)' 2>/dev/null \
	  && $(PYTHON) -c "import torch, torchvision; print('torch', torch.__version__, '/ torchvision', torchvision.__version__, 'present: kept ($(TORCH_REQUIREMENT))')" 2>/dev/null \
	  || { echo "installing $(TORCH_SPEC) (torch or torchvision missing, or torch outside $(TORCH_REQUIREMENT))"; \
	       $(PIP) install -q $(TORCH_SPEC); }

setup-mmcv: setup-torch
	@# mmcv's own imports need mmengine and opencv: without them the check after the build fails and rebuilds
	$(PIP) install -q mmengine==0.10.7 opencv-python-headless
	@# with a GPU, mmcv needs its CUDA operators: a CPU-only build is replaced (see docs/installation.md, GPU)
	@if nvidia-smi -L >/dev/null 2>&1; then \
	  $(PYTHON) tools/install/check_mmcv_cuda.py >/dev/null 2>&1 && echo "mmcv with CUDA operators: present, kept" \
	  || bash tools/install/build_mmcv_cuda.sh; fi
	@$(SATISFIED) '$(MMCV_REQUIREMENT)' 2>/dev/null \
	  && $(PYTHON) -c "import mmcv, mmcv.ops; print('mmcv', mmcv.__version__, 'with compiled ops: present, kept ($(MMCV_REQUIREMENT))')" 2>/dev/null || { \
	  echo "building $(MMCV_SPEC) with its compiled ops against the installed torch (about 40 min on 2 cores the first time; pip caches the wheel)"; \
	  $(MMCV_BUILD_ENV) $(PIP) install --no-build-isolation --force-reinstall --no-deps $(MMCV_SPEC) && \
	  $(PYTHON) -c "import mmcv.ops" 2>/dev/null || \
	  $(MMCV_BUILD_ENV) $(PIP) install --no-build-isolation --force-reinstall --no-deps --no-cache-dir $(MMCV_SPEC); }

# What only the test suite needs: pytest, and for the web demo's browser test (tests/test_demo) the demo extra
# (gradio), Selenium and a headless Chromium with its driver. Chromium comes from Debian's packages, so it is the one
# step that needs root (or sudo); it is skipped when `chromium` and `chromedriver` are already on the PATH.
test-deps: setup
	$(PIP) install -q -r requirements-test.txt
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver (for the web demo's browser test): present"; \
	else \
	  echo "installing Debian's chromium and chromium-driver with apt-get: the web demo's browser test (tests/test_demo) drives the page in headless Chromium"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "error: not root and no sudo: install them as root (apt-get install chromium chromium-driver), then rerun make test" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test: test-deps
	$(PYTHON) -m pytest tests -q -p no:cacheprovider

# trains configs/toy/fiber_toy_attribute_first.py; `make quickstart CONFIG=configs/toy/fiber_toy.py` another recipe
quickstart: setup
	$(PYTHON) tools/misc/quickstart.py $(if $(CONFIG),--config $(CONFIG))

# fine-tunes the quickstart's toy model (trained first if missing) with the ODinW few-shot protocol
toy-few-shot: setup
	$(PYTHON) tools/misc/toy_few_shot.py
