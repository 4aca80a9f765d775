"""The decode-path fuzzer (nvc_pipe/fuzz.py) as part of the suite: a short fixed-seed run must find nothing.

`make fuzz` runs 10,000 cases; this runs 150 (about 10-15 s on 2 CPU cores: seed encodes, two workers starting,
then ~20 ms a case), which with seed 1 reach every mutation family at least twice (asserted) on all seed streams.
A failure prints the fuzzer's summary with a replay command for every finding.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = 150
SEED = 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from nvc_pipe import fuzz

    d = tmp_path_factory.mktemp("fuzz-corpus")
    fuzz.make_seeds(str(d))
    return d


def test_short_fuzz_run_finds_no_crash_hang_or_oom(corpus, tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nvc_pipe.fuzz", "--cases", str(CASES), "--seed", str(SEED), "--corpus", str(corpus),
         "--findings", str(tmp_path / "findings"), "--json", str(summary)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert summary.exists(), proc.stdout + proc.stderr
    report = json.loads(summary.read_text())
    totals = report["totals"]
    assert report["cases"] == CASES
    from nvc_pipe.fuzz.common import FAMILIES

    assert set(report["by_family"]) == set(FAMILIES), sorted(report["by_family"])  # every kind of mutation ran
    assert totals["genfail"] == 0, proc.stdout
    # the harness must reach both ends: valid decodes and clean rejections
    assert totals["ok"] > CASES // 20 and totals["error"] > CASES // 4, proc.stdout
    bad = {k: totals[k] for k in ("crash", "hang", "oom") if totals[k]}
    assert not bad, f"fuzzer found {bad}:\n{proc.stdout[-6000:]}"
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_harness_classifies_outcomes(corpus, tmp_path):
    """The classifier itself: a seed decodes ok, garbage after the magic is a clean error, a deep JSON config is
    whatever the decoder makes of it but never an unclassified exception."""
    from nvc_pipe import fuzz

    seeds = fuzz.load_seeds(sorted(str(p) for p in corpus.iterdir() if p.suffix in (".nvc", ".mkv")))
    out = tmp_path / "out"
    out.mkdir()
    for s in seeds:
        p = tmp_path / ("s" + (".nvc" if s.container == "nvc" else ".mkv"))
        p.write_bytes(s.data)
        assert fuzz.run_case(str(p), True, False, str(out))[0] == "ok", s.name
        assert fuzz.run_case(str(p), False, True, str(out))[0] == "ok", s.name
        assert not list(out.iterdir())
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(fuzz.MAGIC + b"\x01\x00" + b"\x00" * 40)
    outcome, detail, tb = fuzz.run_case(str(bad), True, False, str(out))
    assert outcome == "error" and detail.startswith("BitstreamError"), (outcome, detail, tb)
    # the same case index gives the same bytes (replayable findings)
    a = fuzz.generate(SEED, 17, seeds, str(tmp_path))
    b = fuzz.generate(SEED, 17, seeds, str(tmp_path))
    assert (a.family, a.recipe) == (b.family, b.recipe)
    if not a.suffix == ".mkv":  # MKV files carry random UIDs; their content is the same
        assert a.data == b.data


def test_field_walker_finds_the_length_fields(corpus):
    """crc_field mutates what the walker finds: it must see the header's and the payload's length fields."""
    from nvc_pipe import fuzz

    seed = fuzz.load_seeds([str(corpus / "seed-a32.nvc")])[0]
    names = {f.name for f in fuzz.seqh_fields(seed.parts.seqh)}
    assert {"width", "frame_count", "segment_count", "pix_fmt length", "codec_config length"} <= names
    names = {re.sub(r"^t\d+ ", "", f.name) for f in fuzz.au_fields(seed.parts.aus[0])}
    assert {"frame_count", "tensor count", "ndim", "dim", "kind", "bits", "axis", "masked", "values symbol count",
            "values bins", "values word count"} <= names
