#!/usr/bin/env bash
# The test command: installs what it needs, builds, and runs every suite.
#   C++: gtest suites through CTest (Release), the embedding example, the
#        installed CMake package, an ASAN+UBSAN build and a TSAN build, and a
#        clang -Wthread-safety check of the core.
#   Python: installs the package (pip install .[test]) and runs pytest, ruff
#        and mypy.
# Environment: JOBS (default 2); LMCACHE_SKIP_SANITIZERS=1 skips the two
# sanitizer builds (quick local runs; CI always runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
export CTEST_OUTPUT_ON_FAILURE=1

step() { printf '\n==== %s ====\n' "$*"; }

step "system packages"
bash scripts/install-deps.sh

step "python package (pip install .[test])"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q ".[test]"

cmake_build() {  # dir, extra cmake args...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DLMCACHE_BUILD_PYTHON=OFF -DLMCACHE_BUILD_TESTS=ON -DLMCACHE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

step "C++ tests (Release, with the embedding example)"
cmake_build build/test-release -DCMAKE_BUILD_TYPE=Release -DLMCACHE_BUILD_EXAMPLES=ON -DLMCACHE_BUILD_BENCHMARKS=ON
ctest --test-dir build/test-release -j "$JOBS"

step "installed CMake package + embedding example built against it"
bash tests/cpp/embed/test_install.sh

step "clang -Wthread-safety"
for f in cpp/src/*/*.cc cpp/src/*/*/*.cc; do
  clang++ -std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety -DLMCACHE_HAVE_HIREDIS=1 -Icpp/include -Icpp/src "$f"
done
echo "thread-safety analysis clean"

if [ "${LMCACHE_SKIP_SANITIZERS:-0}" != 1 ]; then
  step "C++ tests under ASAN+UBSAN"
  cmake_build build/test-asan -DCMAKE_BUILD_TYPE=Debug -DLMCACHE_SANITIZE=address
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/test-asan -j "$JOBS"

  step "C++ tests under TSAN"
  cmake_build build/test-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMCACHE_SANITIZE=thread
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 setarch "$(uname -m)" -R ctest --test-dir build/test-tsan -j "$JOBS"
fi

step "ruff + mypy"
python3 -m ruff check python tests/python benchmarks
python3 -m mypy

step "generated docs are current"
python3 scripts/gen_config_docs.py --check
python3 scripts/gen_protocol_docs.py --check

step "pytest"
python3 -m pytest
