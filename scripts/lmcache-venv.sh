#!/usr/bin/env bash
# Creates a virtual environment holding the real LMCache 0.5.6 (the reference
# implementation we compare against), CPU-only. Idempotent: does nothing when
# the venv exists and `import lmcache` works there with version 0.5.6.
#
# Usage: scripts/lmcache-venv.sh [VENV_DIR]   (default /opt/lmcache-0.5.6-venv)
#
# It cannot share a venv with our package: both are called `lmcache`.
# Order matters (docs: shared/reference/machine-facts.md §5.1): torch goes in
# FIRST, pinned to the local CPU build (2.13.0+cpu, found through pip's
# find-links, /opt/wheels here), because lmcache declares `torch` without a
# version and pip would otherwise pull a multi-GB CUDA build from PyPI. The
# lmcache install repeats the torch pin so the resolver cannot replace it.
# Expect ~116 packages, ~1.9 GB, a few minutes.
#
# Run anything in the venv with the environment below (without it, 0.5.6
# reports usage over the network and writes ~/.config/lmcache/machine_id):
#   LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 LMCACHE_DISABLE_BANNER=1 VENV/bin/python ...
set -euo pipefail

VENV="${1:-/opt/lmcache-0.5.6-venv}"
TORCH_SPEC="torch==2.13.0+cpu"
LMCACHE_SPEC="lmcache==0.5.6"
export LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 LMCACHE_DISABLE_BANNER=1

ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
import lmcache  # noqa: F401
assert m.version("lmcache") == "0.5.6", m.version("lmcache")
EOF
}

if ok; then
  echo "lmcache-venv: $VENV already has lmcache 0.5.6"
  exit 0
fi

# A Python 3.11 interpreter (the version the reference was measured with).
PY=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
     "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    PY="$(command -v "$cand")"
    break
  fi
done
if [ -z "$PY" ]; then
  echo "lmcache-venv: no Python 3.11 interpreter found (python3.11 or python3)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "lmcache-venv: creating $VENV with $PY"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# pip warns once per package about local index folders it does not hold; hide those lines.
quiet_pip() { "${PIP[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

echo "lmcache-venv: installing $TORCH_SPEC (CPU build only)"
if ! quiet_pip "$TORCH_SPEC"; then
  echo "lmcache-venv: $TORCH_SPEC not found. It is not on PyPI; put the CPU wheel in a" >&2
  echo "  pip find-links folder (PIP_FIND_LINKS, e.g. /opt/wheels). Refusing a CUDA torch." >&2
  exit 1
fi

echo "lmcache-venv: installing $LMCACHE_SPEC and its dependencies (slow, ~1.9 GB)"
quiet_pip "$LMCACHE_SPEC" "$TORCH_SPEC"

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m

import torch

assert torch.version.cuda is None, f"CUDA torch got installed: {torch.__version__}"
import lmcache  # noqa: F401,E402

print(f"lmcache-venv: ok: lmcache {m.version('lmcache')}, torch {torch.__version__}")
EOF
