"""docs/protocol.md's op table is generated from lmcache/protocol/ops.py and stays in sync."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lmcache.protocol.ops import OPS

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_doc_op_table_is_current() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH", "")) if p)
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protocol_docs.py"), "--check"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr


def test_protocol_doc_names_every_op() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    for op in OPS:
        assert f"`{op.name}`" in text
