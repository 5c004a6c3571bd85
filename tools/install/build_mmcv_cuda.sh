#!/usr/bin/env bash
# Build mmcv 2.1.0 with its CUDA ops (NMS, modulated deformable convolution, ...) against the installed
# torch, for GPU machines. `make setup` builds the CPU-only ops (FORCE_CUDA=0); this replaces that build.
#
#   tools/install/build_mmcv_cuda.sh             build and install (pip), then check the installed ops
#   tools/install/build_mmcv_cuda.sh --dry-run   print the toolkit, environment and commands; change nothing
#   tools/install/build_mmcv_cuda.sh --ops DIR [SOURCE...]
#                      compile only the translation units of the ops FIBER calls (or the SOURCEs given,
#                      paths under mmcv/ops/csrc) into DIR, and link them; minutes, no GPU needed; installs nothing
#
# Why the extra settings: mmcv 2.1.0's setup.py passes -std=c++17 to g++ and to nvcc, and torch 2.14's
# headers require C++20. cxx20.sh fixes the .cpp files (CXX); nvcc_cxx20.sh fixes the .cu files
# (PYTORCH_NVCC, which torch's ninja build runs instead of $CUDA_HOME/bin/nvcc).
#
# Environment:
#   PYTHON                python to build for (default python3)
#   TORCH_CUDA_ARCH_LIST  GPU architectures, e.g. "8.0;9.0" (default: the GPUs nvidia-smi lists)
#   FIBER_CUDA_HOME       an installed CUDA toolkit whose nvcc matches torch's CUDA version; without it,
#                         nvcc and the CUDA headers come from PyPI into FIBER_CUDA_PREFIX
#   FIBER_CUDA_PREFIX     where the PyPI toolkit goes (default ~/.cache/fiber_mmdet/cuda-<torch's CUDA>)
#   FIBER_TORCH_CUDA      torch's CUDA version, e.g. 13.0 (default: asked from torch)
#   MMCV_VERSION          the mmcv release to build (default 2.1.0)
#   MAX_JOBS              parallel compile jobs (default: number of cores)
set -euo pipefail

MMCV_VERSION="${MMCV_VERSION:-2.1.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
# The translation units behind the mmcv ops FIBER calls (batched_nms -> nms; ModulatedDeformConv2d),
# their CPU twins, and the files that register and bind them (paths under mmcv/ops/csrc).
FIBER_OPS_SOURCES=(
  pytorch/cuda/nms_cuda.cu
  pytorch/cuda/modulated_deform_conv_cuda.cu
  pytorch/cuda/cudabind.cpp
  pytorch/nms.cpp
  pytorch/modulated_deform_conv.cpp
  pytorch/cpu/nms.cpp
  pytorch/cpu/modulated_deform_conv.cpp
  pytorch/pybind.cpp
)

die() { echo "build_mmcv_cuda.sh: $*" >&2; exit 1; }

mode=install
ops_dir=
case "${1:-}" in
  "") ;;
  --dry-run) mode=dry-run ;;
  --ops)
    mode=ops; ops_dir="${2:?--ops needs a build folder}"
    if [ $# -gt 2 ]; then FIBER_OPS_SOURCES=("${@:3}"); fi ;;
  -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option '$1' (use --dry-run, --ops DIR or --help)" ;;
esac

# --- torch's CUDA version: the toolkit must match it (torch refuses a different major version) ---
torch_cuda="${FIBER_TORCH_CUDA:-$("$PY" -c 'import torch; print(torch.version.cuda or "none")')}"
[ "$torch_cuda" = none ] && die "the installed torch is a CPU-only build (torch.version.cuda is None); install a CUDA build of torch first"
cuda_major="${torch_cuda%%.*}"

# --- the toolkit: an installed one (FIBER_CUDA_HOME) or nvcc and headers from PyPI ---
pip_toolkit=()
extra_cpath=
if [ -n "${FIBER_CUDA_HOME:-}" ]; then
  cuda_home="$FIBER_CUDA_HOME"
  toolkit_from="FIBER_CUDA_HOME"
else
  [ "$cuda_major" -ge 13 ] 2>/dev/null || die "nvcc from PyPI is set up here for CUDA >= 13 (nvidia-cuda-nvcc wheels); torch is built with CUDA $torch_cuda: set FIBER_CUDA_HOME to a CUDA $torch_cuda toolkit"
  prefix="${FIBER_CUDA_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/fiber_mmdet/cuda-$torch_cuda}"
  cuda_home="$prefix/nvidia/cu$cuda_major"
  toolkit_from="PyPI, in $prefix"
  # Pinned one by one: nvidia-cuda-nvcc's own requirements are unpinned and would pull the newest nvvm/crt.
  for p in nvidia-cuda-nvcc nvidia-cuda-crt nvidia-nvvm nvidia-cuda-cccl nvidia-cuda-runtime; do
    pip_toolkit+=("$p==$torch_cuda.*")
  done
  # ATen's CUDA headers include cuBLAS/cuSPARSE/cuSOLVER headers; torch's own CUDA wheels installed them.
  extra_cpath="$("$PY" -c "
import importlib.util, os, sys
spec = importlib.util.find_spec('nvidia')
for d in (spec.submodule_search_locations if spec else []):
    inc = os.path.join(d, 'cu$cuda_major', 'include')
    if os.path.isfile(os.path.join(inc, 'cublas_v2.h')):
        print(inc); break
")"
fi

# --- GPU architectures: torch cannot guess them without a GPU (it fails on an empty list) ---
arch_list="${TORCH_CUDA_ARCH_LIST:-}"
if [ -z "$arch_list" ] && command -v nvidia-smi >/dev/null; then
  arch_list="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | paste -sd';' || true)"
fi
[ -n "$arch_list" ] || die "no GPU visible: set TORCH_CUDA_ARCH_LIST to the target GPUs' compute capabilities, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0' (A100, H100)"

build_env=(
  "CUDA_HOME=$cuda_home"
  "CXX=$HERE/cxx20.sh"
  "PYTORCH_NVCC=$HERE/nvcc_cxx20.sh"
  "FIBER_REAL_NVCC=$cuda_home/bin/nvcc"
  "TORCH_CUDA_ARCH_LIST=$arch_list"
  "MMCV_WITH_OPS=1"
  "FORCE_CUDA=1"
  "MAX_JOBS=${MAX_JOBS:-$(nproc)}"
)
if [ -n "$extra_cpath" ]; then build_env+=("CPATH=$extra_cpath${CPATH:+:$CPATH}"); fi
# --no-cache-dir: pip would otherwise reuse the CPU-only wheel that `make setup` cached for the same sdist.
install_cmd=("$PY" -m pip install --no-build-isolation --no-deps --force-reinstall --no-cache-dir "mmcv==$MMCV_VERSION")
# What mmcv 2.1.0's setup.py and torch's BuildExtension hand to nvcc (before the -gencode flags).
mmcv_nvcc_flags=(-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
                 -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr --compiler-options "'-fPIC'" -std=c++17)

if [ "$mode" = dry-run ]; then
  echo "torch CUDA:       $torch_cuda"
  echo "CUDA toolkit:     $toolkit_from"
  if [ ${#pip_toolkit[@]} -gt 0 ]; then
    echo "toolkit install:  $PY -m pip install --target $prefix --no-deps ${pip_toolkit[*]}"
  fi
  printf 'build env:        %s\n' "${build_env[@]}"
  echo "mmcv nvcc flags:  ${mmcv_nvcc_flags[*]}"
  echo "nvcc runs:        $(env "${build_env[@]}" FIBER_NVCC_PRINT=1 "$HERE/nvcc_cxx20.sh" -c x.cu -o x.o "${mmcv_nvcc_flags[@]}")"
  echo "build command:    ${install_cmd[*]}"
  exit 0
fi

command -v ninja >/dev/null || die "ninja is missing (pip install ninja): torch only honours PYTORCH_NVCC in its ninja build"

if [ ${#pip_toolkit[@]} -gt 0 ] && [ ! -x "$cuda_home/bin/nvcc" ]; then
  echo "installing nvcc and the CUDA headers from PyPI into $prefix"
  "$PY" -m pip install -q --target "$prefix" --no-deps "${pip_toolkit[@]}"
fi
[ -x "$cuda_home/bin/nvcc" ] || die "no nvcc at $cuda_home/bin/nvcc"
nvcc_release="$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
[ "${nvcc_release%%.*}" = "$cuda_major" ] || die "nvcc at $cuda_home is CUDA $nvcc_release, torch is built with CUDA $torch_cuda"
[ "$nvcc_release" = "$torch_cuda" ] || echo "warning: nvcc is CUDA $nvcc_release, torch is built with CUDA $torch_cuda" >&2
# The runtime wheel ships only libcudart.so.<major>; the link step asks for -lcudart.
if [ ${#pip_toolkit[@]} -gt 0 ] && [ ! -e "$cuda_home/lib/libcudart.so" ]; then
  ln -s "libcudart.so.$cuda_major" "$cuda_home/lib/libcudart.so"
fi
echo "nvcc $nvcc_release ($toolkit_from), TORCH_CUDA_ARCH_LIST=$arch_list"

if [ "$mode" = ops ]; then
  mkdir -p "$ops_dir"
  ops_dir="$(cd "$ops_dir" && pwd)"
  src="$ops_dir/mmcv-$MMCV_VERSION"
  if [ ! -f "$src/setup.py" ]; then
    "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$ops_dir"
    tar -xzf "$ops_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$ops_dir"
  fi
  rm -rf "$ops_dir/build"
  start=$(date +%s)
  env "${build_env[@]}" "$PY" "$HERE/mmcv_subset_build.py" --src "$src" --build-dir "$ops_dir/build" \
    "${FIBER_OPS_SOURCES[@]}"
  echo "compiled and linked in $(( $(date +%s) - start )) s; seconds per translation unit (ninja's log):"
  awk -F'\t' '!/^#/ { printf "  %6.1f  %s\n", ($2 - $1) / 1000, $4 }' "$ops_dir/build/temp/.ninja_log"
  for s in "${FIBER_OPS_SOURCES[@]}"; do
    case "$s" in *.cu)
      obj="$ops_dir/build/temp/mmcv/ops/csrc/${s%.cu}.o"
      sections="$(objdump -h "$obj")"  # not piped into grep -q: under pipefail objdump's SIGPIPE would count
      grep -q '\.nv_fatbin' <<<"$sections" || die "$obj holds no GPU code (.nv_fatbin section)"
      echo "GPU code present: $obj" ;;
    esac
  done
  exit 0
fi

env "${build_env[@]}" "${install_cmd[@]}"
"$PY" "$HERE/check_mmcv_cuda.py"
