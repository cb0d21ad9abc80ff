#!/bin/sh
# The whole test suite, from a fresh clone on Debian 12 (as root, or with sudo):
#  1. installs the Debian packages it needs (scripts/install-deps.sh) and checks the C formatting,
#  2. builds with warnings as errors and runs every test through ctest: the C unit tests (cmocka),
#     the fuzz-corpus replays, and pytest (Python API + end-to-end CLI tests) under /usr/bin/python3,
#  3. rebuilds with ASan+UBSan and runs the C unit tests and fuzz replays again,
#  4. rebuilds with TSan and runs the threaded C tests.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CTEST_OUTPUT_ON_FAILURE=1

echo "== format (clang-format --dry-run --Werror, .clang-format)"
find src include cli python tests fuzz bench examples -name '*.[ch]' -not -path '*/data/*' |
    xargs -r clang-format --dry-run --Werror

echo "== release build + all tests"
BUILD_DIR=build ./scripts/build.sh -DSP_BUILD_PYTHON=ON -DSP_SANITIZE=
ctest --test-dir build -j 2

echo "== ASan+UBSan build: unit tests + fuzz corpus replay"
BUILD_DIR=build-asan ./scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=address,undefined -DSP_BUILD_PYTHON=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -L 'unit|fuzz' -j 2

echo "== TSan build: threaded tests"
BUILD_DIR=build-tsan ./scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=thread -DSP_BUILD_PYTHON=OFF
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan -L unit -R 'test_shard|test_pack|test_loader|test_eval$|test_eval_sort|test_tree$|test_transform|test_cache_store|test_pool' -j 2

echo "== all tests passed"
