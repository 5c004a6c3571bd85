# Two commands do everything on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_SPEC := torch==2.14.1 torchvision==0.29.1
# mmcv 2.1.0 ships only as a source distribution; it is compiled against the installed torch.
MMCV_BUILD_ENV := CXX=$(CURDIR)/tools/install/cxx20.sh MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$$(nproc)

.PHONY: setup test quickstart toy-few-shot

setup:
	$(PIP) install -q $(TORCH_SPEC) "setuptools>=77,<81" wheel ninja numpy
	@# mmcv's own imports need mmengine and opencv: without them the check after the build fails and rebuilds
	$(PIP) install -q mmengine==0.10.7 opencv-python-headless
	@$(PYTHON) -c "import mmcv.ops" 2>/dev/null && echo "mmcv with compiled ops: present" || { \
	  echo "building mmcv 2.1.0 with its compiled ops (about 40 min on 2 cores the first time; pip caches the wheel)"; \
	  $(MMCV_BUILD_ENV) $(PIP) install --no-build-isolation --force-reinstall --no-deps mmcv==2.1.0 && \
	  $(PYTHON) -c "import mmcv.ops" 2>/dev/null || \
	  $(MMCV_BUILD_ENV) $(PIP) install --no-build-isolation --force-reinstall --no-deps --no-cache-dir mmcv==2.1.0; }
	$(PIP) install -q -r requirements.txt
	@# the web demo's browser test (tests/test_demo): its extra, Selenium, and Debian's Chromium with its driver
	$(PIP) install -q -r requirements-demo.txt selenium==4.51.0
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && echo "chromium and chromedriver: present" || { \
	  echo "installing chromium and chromium-driver (apt-get, as root) for the web demo's browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PYTHON) -c "import mmcv.ops, mmdet.models, mmpretrain.models, fiber_mmdet; print('fiber_mmdet', fiber_mmdet.__version__, 'ready')"

test: setup
	$(PYTHON) -m pytest tests -q -p no:cacheprovider

# trains configs/toy/fiber_toy_attribute_first.py; `make quickstart CONFIG=configs/toy/fiber_toy.py` another recipe
quickstart: setup
	$(PYTHON) tools/misc/quickstart.py $(if $(CONFIG),--config $(CONFIG))

# fine-tunes the quickstart's toy model (trained first if missing) with the ODinW few-shot protocol
toy-few-shot: setup
	$(PYTHON) tools/misc/toy_few_shot.py
