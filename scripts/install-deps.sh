#!/usr/bin/env bash
# Installs the system packages lmcache needs on a fresh Debian machine (as root, or with sudo).
# Idempotent. `install-deps.sh build`: what `pip install .` needs (compiler, CMake, headers);
# `install-deps.sh` or `install-deps.sh test`: that plus the test tools (gtest, clang).
set -euo pipefail
pkgs=(cmake ninja-build g++ nlohmann-json3-dev pkg-config libhiredis-dev)
if [ "${1:-test}" != build ]; then
  pkgs+=(libgtest-dev libgmock-dev clang redis-server libxxhash0)  # libxxhash0: reference for the XXH3 test
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
