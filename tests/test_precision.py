"""Float-math settings: TF32 only while training, exact math while frames are rendered; encode reports what a
decoder in another process (CPU only) produces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest

from conftest import ROOT
from nvc_pipe import api, precision
from nvc_pipe.media.demux import open_video
from nvc_pipe.metrics import frame_psnr
from nvc_pipe.stages import overfit
from test_training import _work

EXACT = {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "cudnn.deterministic": True,
         "cudnn.benchmark": False}
CRC_OF_CPU_DECODE = """
import json, sys, zlib
from nvc_pipe import api
crc = 0
for f in api.decode_frames(sys.argv[1], device="cpu"):
    crc = zlib.crc32(f.tobytes(), crc)
print(json.dumps({"crc": crc}))
"""


def test_fit_scopes_tf32_to_training(media):
    before = precision.current()
    work, _ = _work(media)
    inside = []
    overfit.fit(work, stage="overfit", epochs=1, lr_at=lambda s, n: 1e-3,
                after_step=lambda: inside.append(precision.current()))
    assert inside and all(s["cuda.matmul.allow_tf32"] and s["cudnn.allow_tf32"] for s in inside)
    assert precision.current() == before


def test_precision_contexts_restore_on_error():
    before = precision.current()
    with pytest.raises(KeyError):
        with precision.exact_math():
            assert precision.current() == EXACT
            raise KeyError("x")
    assert precision.current() == before



def test_frames_render_under_exact_math_even_after_a_leak(media, tmp_path):
    out = tmp_path / "t.nvc"
    with precision.training_math():  # as if earlier work in the process had left TF32 on
        leaked = precision.current()
        report = api.encode_file(str(media["odd"]), str(out), preset="tiny", overrides={"epochs": 1},
                                 device="cpu", progress=False)
        frames = api.decode_frames(str(out), device="cpu")
        crc = zlib.crc32(next(frames).tobytes())
        during = precision.current()
        for f in frames:
            crc = zlib.crc32(f.tobytes(), crc)
        assert precision.current() == leaked
    assert during == EXACT and leaked["cuda.matmul.allow_tf32"]
    # the CPU half of the cross-device check: a decoder in a separate, CPU-only process gives the same frames,
    # and the quality the encoder reported is theirs
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    other = subprocess.run([sys.executable, "-c", CRC_OF_CPU_DECODE, str(out)], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=120)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["crc"] == crc
    with open_video(str(media["odd"])) as src:
        source = next(src.segments(None)).rgb
    decoded = list(api.decode_frames(str(out), device="cpu"))
    psnr = sum(frame_psnr(a, b, 255) for a, b in zip(decoded, source)) / len(source)
    assert round(psnr, 4) == report["psnr_rgb"]
