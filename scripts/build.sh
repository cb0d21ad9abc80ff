#!/bin/sh
# Configures and builds softpipe in BUILD_DIR (default: build) with warnings as errors.
# Extra arguments go to cmake's configure step.
set -eu
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DSP_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
