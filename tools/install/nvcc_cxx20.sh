#!/usr/bin/env bash
# nvcc shim for building mmcv 2.1.0's CUDA ops against torch >= 2.14 (the CUDA twin of cxx20.sh).
# mmcv's setup.py appends -std=c++17 to nvcc's flags for every torch > 1.12, and torch 2.14's headers
# stop with "#error C++20 or later compatible compiler is required to use ATen". nvcc hands -std to
# both its own front end and the host compiler, so changing CXX (cxx20.sh) cannot fix .cu files.
# torch's ninja build runs $PYTORCH_NVCC instead of $CUDA_HOME/bin/nvcc when it is set: pointing it
# here raises the standard without patching mmcv's sources.
#   FIBER_REAL_NVCC   the nvcc to run (default: $CUDA_HOME/bin/nvcc)
#   FIBER_NVCC_PRINT  when 1, print the rewritten command line instead of running it
args=()
for a in "$@"; do
  case "$a" in
    -std=c++03|-std=c++11|-std=c++14|-std=c++17) args+=("-std=c++20") ;;
    --std=c++03|--std=c++11|--std=c++14|--std=c++17) args+=("--std=c++20") ;;
    *) args+=("$a") ;;
  esac
done
real="${FIBER_REAL_NVCC:-${CUDA_HOME:?nvcc_cxx20.sh: set CUDA_HOME or FIBER_REAL_NVCC}/bin/nvcc}"
if [ "${FIBER_NVCC_PRINT:-0}" = 1 ]; then
  printf '%s\n' "$real ${args[*]}"
  exit 0
fi
exec "$real" "${args[@]}"
