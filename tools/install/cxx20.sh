#!/usr/bin/env bash
# Compiler shim for building mmcv 2.1.0 against torch >= 2.14.
# mmcv's setup.py hard-codes -std=c++17 for every torch > 1.12, but torch 2.14's
# headers require C++20. This wrapper forwards every argument to the real C++
# compiler and only raises the language standard, so the PyPI sdist builds
# unmodified (and pip caches the resulting wheel as usual).
args=()
for a in "$@"; do
  case "$a" in
    -std=c++14|-std=c++17) args+=("-std=c++20") ;;
    *) args+=("$a") ;;
  esac
done
exec "${FIBER_REAL_CXX:-g++}" "${args[@]}"
