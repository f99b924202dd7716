#!/usr/bin/env bash
# Install test for the C++ package: build lmcache_core without Python,
# install it into a temporary prefix, then build examples/embed standalone
# against that prefix (find_package(lmcache) -> lmcache::core) and run it.
#
# Usage: tests/cpp/embed/test_install.sh
# Honors CXX and CMAKE_GENERATOR from the environment. Exits non-zero on the
# first failure; the temporary directory is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/lmcache-install-test.XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT

BUILD="${TMP}/build"
PREFIX="${TMP}/prefix"
EMBED_BUILD="${TMP}/build-embed"

echo "== configure lmcache (no Python) in ${BUILD}"
cmake -S "${ROOT}" -B "${BUILD}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DLMCACHE_BUILD_PYTHON=OFF \
  -DLMCACHE_BUILD_TESTS=OFF \
  -DLMCACHE_BUILD_EXAMPLES=OFF

echo "== build and install lmcache_core into ${PREFIX}"
cmake --build "${BUILD}" --target lmcache_core -j2
cmake --install "${BUILD}" --prefix "${PREFIX}"
test -f "${PREFIX}/include/lmcache/l1_store.h"
find "${PREFIX}" -name lmcacheConfig.cmake | grep -q .

echo "== configure examples/embed standalone against ${PREFIX}"
cmake -S "${ROOT}/examples/embed" -B "${EMBED_BUILD}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="${PREFIX}"
cmake --build "${EMBED_BUILD}" -j2

echo "== run embed_example"
"${EMBED_BUILD}/embed_example"
echo "== install test passed"
