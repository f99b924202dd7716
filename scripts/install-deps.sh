#!/usr/bin/env bash
# Installs the system packages the build and the tests need, on a fresh
# Debian machine (run as root, or with sudo available). Idempotent.
set -euo pipefail
pkgs=(cmake ninja-build g++ libgtest-dev libgmock-dev clang nlohmann-json3-dev)
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
