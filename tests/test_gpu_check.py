"""benchmarks/gpu_check.py --smoke: the GPU check's own code, end to end on the CPU with tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_phase(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {(r["phase"], r["check"]): r for r in report["rows"]}
    assert all(r["result"] == "ok" for r in report["rows"]), [r for r in report["rows"] if r["result"] != "ok"]
    # on one device the decoders agree to the bit and the encoder reports what they produce
    for phase in ("a", "b"):
        assert rows[(phase, "gpu vs cpu decode")]["max_diff"] == 0
        assert rows[(phase, "encode report = gpu decode")]["result"] == "ok"
    assert rows[("b", "c3 frame CRCs")]["crc_encoder"] == rows[("b", "c3 frame CRCs")]["crc_cpu"]
    assert rows[("c", "quality after 2 epochs")]["epochs"] == 2
    assert rows[("c", "train torch.compile")]["graphs"] == 2  # forward and loss, once for both epochs
    assert rows[("d", "decode 64x64")]["fp32_fps"] > 0
    assert proc.stdout.count("\n| ") == len(report["rows"]) + 1  # one table: its header and a line per row
