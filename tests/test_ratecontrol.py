"""Rate control: target parsing, the CLI's options and aliases, one-line refusals before any training, the plan,
each plugin's target → configuration mapping (no training), and the achieved rate of a real tiny encode."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from conftest import write_video

from nvc_pipe import cli
from nvc_pipe.errors import ConfigError
from nvc_pipe.rate import Clip, Target, make_target, parse_bitrate, parse_duration


@pytest.fixture(scope="module")
def clip64(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("rc") / "c64.mp4", 64, 64, 8)


def test_bitrate_suffixes():
    assert parse_bitrate("500k") == 500_000
    assert parse_bitrate("2M") == 2_000_000
    assert parse_bitrate("1.5M") == 1_500_000
    assert parse_bitrate("800") == 800
    for bad in ("5x", "k", "", "1.5.2M", "-1k", "0", "0k", "1e400"):
        with pytest.raises(ConfigError):
            parse_bitrate(bad)
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(ConfigError):
        parse_duration("10 minutes")


def test_one_target_at_most():
    assert make_target() is None
    assert make_target(quality=28) == Target("quality", 28)
    with pytest.raises(ConfigError, match="one rate target"):
        make_target(bitrate="1M", quality=20)
    with pytest.raises(ConfigError, match="one rate target"):
        make_target(bpp=0.1, bitrate=5e5)
    for bad in ({"quality": 52}, {"quality": -1}, {"bpp": 0.0}, {"bpp": -0.1}, {"bitrate": 0.0}):
        with pytest.raises(ConfigError):
            make_target(**bad)


def test_ffmpeg_style_aliases_parse_as_whole_options():
    p = cli.build_parser()
    a = p.parse_args(["encode", "in.mp4", "-o", "o.mkv", "-crf", "28"])
    assert a.quality == 28 and a.codec == "hinerv" and a.bitrate is None
    a = p.parse_args(["encode", "in.mp4", "-o", "o.mkv", "-c", "c3", "-b:v", "1.5M"])
    assert a.bitrate == 1_500_000 and a.codec == "c3" and a.quality is None
    a = p.parse_args(["encode", "in.mp4", "-o", "o.mkv", "--bpp", "0.05", "--steps", "10", "--time-limit", "10m"])
    assert (a.bpp, a.steps, a.time_limit) == (0.05, 10, 600)


def _fails_before_training(capsys, argv, code=2):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("nvc") and "Traceback" not in err[0], err
    assert "plan:" not in err[0]
    return err[0]


@pytest.mark.parametrize("extra, message", [
    (["-b:v", "0"], "bitrate"),
    (["-b:v", "-5k"], "bitrate"),
    (["--bitrate", "5x"], "invalid bitrate"),
    (["-b:v", "1M", "-crf", "20"], "one rate target"),
    (["--bpp", "0.1", "--quality", "20"], "one rate target"),
    (["-crf", "60"], "0..51"),
    (["--bpp", "0"], "> 0"),
    (["--bpp", "0.001"], "below hinerv's smallest network"),
    (["-b:v", "30M"], "above the raw video's 24 bpp"),
    (["-c", "c3", "--bpp", "0.001"], "below c3's smallest stream"),
    (["-c", "c3", "--bpp", "20"], "above what c3 codes"),
    (["-c", "c3", "--lambda", "1e-3", "-b:v", "1M"], "--lambda or a rate target"),
    (["--lambda", "1e-3"], "rd-* presets"),
    (["--steps", "4", "--epochs", "4"], "--steps or --epochs"),
    (["-c", "c3", "--prune-epochs", "3"], "not used by c3"),
])
def test_bad_rate_options_fail_in_one_line_before_training(capsys, clip64, tmp_path, extra, message):
    out = tmp_path / "o.mkv"
    line = _fails_before_training(capsys, ["encode", str(clip64), "-o", str(out), *extra])
    assert message in line
    assert not out.exists() and not (tmp_path / "o.mkv.nvc-partial").exists()


def test_plan_is_printed_and_the_target_travels_to_info(capsys, clip64, tmp_path):
    out = tmp_path / "o.mkv"
    assert cli.main(["encode", str(clip64), "-o", str(out), "-b:v", "300k", "--steps", "8", "--json"]) == 0
    captured = capsys.readouterr()
    plan_lines = [ln for ln in captured.err.splitlines() if ln.startswith("nvc: plan:")]
    assert len(plan_lines) == 1 and "parameters" in plan_lines[0] and "steps" in plan_lines[0]
    assert "on this device" in plan_lines[0]
    import json

    report = json.loads(captured.out)
    assert report["target"]["kind"] == "bitrate" and report["target"]["value"] == 300_000
    assert report["plan"]["steps"] >= 8 and report["plan"]["parameters"] > 0
    assert cli.main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "target 300kb/s" in info and "achieved" in info


def test_a_missed_target_keeps_the_stream_and_says_so_in_one_line(capsys, clip64, tmp_path):
    """4 steps cannot bring c3 to 0.6 bpp on 64x64x8 (it codes ~0.17): the valid stream is kept, stderr has one
    warning with the achieved rate and the miss, and the JSON report lists it."""
    import json

    out = tmp_path / "o.mkv"
    assert cli.main(["encode", str(clip64), "-o", str(out), "-c", "c3", "--bpp", "0.6", "--steps", "4", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    missed = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert abs(report["bpp"] / 0.6 - 1) > 0.10 and out.exists()
    assert len(missed) == 1 and missed[0].startswith("nvc: warning: the video stream is")
    assert "0.6 bpp asked" in missed[0]
    assert report["warnings"] == [missed[0].removeprefix("nvc: warning: ")]
    assert cli.main(["info", str(out)]) == 0 and "target 0.6 bpp" in capsys.readouterr().out


def test_eval_flags_a_missed_target_beside_its_point(clip64, tmp_path):
    """The same miss in `nvc eval`: the point is kept in the RD table and listed, with the encoder's warning, in
    results.md and results.json (`rate_misses`)."""
    import json
    import subprocess

    root = tmp_path / "clips"
    root.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip64), "-pix_fmt", "yuv420p", str(root / "c64.y4m")],
                   check=True)
    out = tmp_path / "eval"
    assert cli.main(["eval", "--dataset", "dir", "--root", str(root), "--codecs", "c3:c3-fast", "--bpp", "0.6",
                     "--set", "steps=4", "--no-plots", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    rep = json.loads((out / "results.json").read_text())
    assert [(m["sequence"], m["point"]) for m in rep["rate_misses"]] == [("c64", "bpp=0.6")]
    assert rep["rate_misses"][0]["warning"].startswith("the video stream is")
    assert len(rep["points"]) == 1 and abs(rep["points"][0]["bpp"] / 0.6 - 1) > 0.10
    md = (out / "results.md").read_text()
    assert "## Rate targets missed by more than 10 %" in md and rep["rate_misses"][0]["warning"] in md


def test_hinerv_achieves_its_bitrate_on_a_tiny_clip(clip64, tmp_path):
    from nvc_pipe.api import encode_file

    rep = encode_file(str(clip64), str(tmp_path / "o.mkv"), target=Target("bpp", 2.0), overrides={"steps": 40},
                      device="cpu", progress=False)
    assert abs(rep["bpp"] / 2.0 - 1) <= 0.10, rep["bpp"]
    assert rep["segments"][0]["rate"]["budget_bytes"] > 0


def _clip(w, h, n, fps=25, overhead=300):
    return Clip(w, h, n, Fraction(fps), n, overhead)


def test_hinerv_target_to_network_is_monotone_and_within_budget():
    from nvc_hinerv import codec, ratecontrol

    clip = _clip(176, 144, 24)
    sizes = []
    for bpp in (0.1, 1.0, 3.0):
        cfg = codec.configure(None, Target("bpp", bpp), {}, clip)
        params, _ = ratecontrol.count_parameters(cfg.model, 24, 144, 176)
        assert ratecontrol.predicted_bytes(cfg.model, 24, 144, 176) <= clip.payload_bytes(bpp)
        sizes.append(params)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    # no gap between widths: a grid channel less or narrower MLPs fill the budget to within 5 % of the margin
    wide = _clip(320, 136, 30)
    for rate in (60e3, 200e3, 600e3):
        budget = wide.payload_bytes(wide.bpp(Target("bitrate", rate)))
        cfg = codec.configure(None, Target("bitrate", rate), {}, wide)
        assert 0.92 * budget <= ratecontrol.predicted_bytes(cfg.model, 30, 136, 320) <= 0.97 * budget
    rates = [codec.configure(None, Target("quality", q), {}, clip).stream_bpp for q in (34, 28, 22)]
    assert rates == sorted(rates) and rates[1] == pytest.approx(2 * rates[0])


def test_hinerv_sized_networks_are_not_pruned_by_plan():
    """Pruning costs dB at CPU schedules for a few % of bytes: a sized network is trained unpruned, `aim` prunes only
    when the trained network codes over its budget, and otherwise hands the prune epoch to QAT (no step lost)."""
    import torch

    from nvc_hinerv import codec, ratecontrol
    from nvc_hinerv.codec import segment_model
    from nvc_pipe.pipeline import Work

    clip = _clip(64, 64, 8)
    cfg = codec.configure(None, Target("bpp", 1.0), {"steps": 200}, clip)
    t = cfg.train
    assert t.prune_epochs == 1 and t.epochs > 10 * t.qat_epochs
    torch.manual_seed(0)
    model = segment_model(cfg.model, 8, 64, 64)
    size = ratecontrol.coded_bytes(model, {}, t.bits)
    roomy = ratecontrol.aim(Work(None, None, cfg, torch.device("cpu"), False, model=model, budget_bytes=2 * size))
    assert roomy.config.train.prune_ratio == 0 and roomy.config.train.prune_epochs == 0
    assert roomy.config.train.qat_epochs == t.qat_epochs + t.prune_epochs
    tight = ratecontrol.aim(Work(None, None, cfg, torch.device("cpu"), False, model=model,
                                 budget_bytes=int(0.95 * size)))
    assert 0 < tight.config.train.prune_ratio <= 0.5 and tight.config.train.prune_epochs == 1
    assert tight.report["rate"]["aimed_bytes"] <= 0.95 * size
    # the recipe presets keep their pruning
    assert codec.configure("fast", None, {}, clip).train.prune_ratio == 0.15


def test_hinerv_steps_come_from_the_clip_and_overrides():
    from nvc_hinerv import codec

    short, long = _clip(176, 144, 8), _clip(176, 144, 48)
    p_short = codec.plan(codec.configure(None, None, {}, short), short)
    p_long = codec.plan(codec.configure(None, None, {}, long), long)
    assert 400 <= p_short["steps"] < p_long["steps"]
    cfg_short = codec.configure(None, None, {}, short)
    assert cfg_short.train.epochs > codec.configure(None, None, {}, long).train.epochs  # more passes over 8 frames
    assert codec.plan(codec.configure(None, None, {"steps": 100}, long), long)["steps"] == pytest.approx(100, abs=24)
    # paper recipes keep their epochs
    assert codec.configure("bunny-xxs", None, {}, long).train.epochs == 300


def test_default_quality_is_under_0_3_bpp_and_within_3x():
    from nvc_c3 import ratecontrol as c3rc
    from nvc_hinerv import codec

    clips = [_clip(176, 144, 24), _clip(320, 180, 30), _clip(640, 360, 120)]
    rates = [codec.configure(None, None, {}, c).stream_bpp for c in clips]
    rates += [c3rc.plan(c3rc.configure(None, None, {}, c), c)["stream_bpp"] for c in clips]
    assert max(rates) <= 0.3 and max(rates) / min(rates) <= 3
    # 64x64x8 (a 344-byte header, as measured): HiNeRV's smallest network, small tensors without histograms
    # and 1x1 block convolutions, is predicted under 0.3 bpp with the headers
    from nvc_hinerv import ratecontrol

    tiny = _clip(64, 64, 8, overhead=344)
    cfg = codec.configure(None, None, {}, tiny)
    stream = ratecontrol.predicted_bytes(cfg.model, 8, 64, 64) + tiny.overhead_bytes
    assert cfg.stream_bpp <= 0.3 and 8 * stream / tiny.pixels < 0.29 and cfg.model.kernel_size == 1


def test_c3_target_to_lambda_and_patch_layout():
    from nvc_c3 import ratecontrol as rc

    clip = _clip(256, 144, 16)
    lams = [rc.configure(None, Target("bpp", b), {}, clip).c3.rd_lambda for b in (0.2, 0.5, 1.5)]
    assert lams == sorted(lams, reverse=True)
    cfg = rc.configure(None, Target("bpp", 0.5), {}, clip)
    assert (cfg.model.patch_height, cfg.model.patch_width) == (144, 256)  # one spatial patch on a small frame
    big = rc.configure(None, Target("bpp", 0.1), {}, _clip(1280, 720, 30))
    assert rc.patch_count(big.model, _clip(1280, 720, 30)) == 4
    direct = rc.configure(None, None, {"lambda": 2e-4}, clip)
    assert direct.c3.rd_lambda == 2e-4 and rc.plan(direct, clip)["stream_bpp"] is None
    assert rc.total_steps(rc.configure(None, None, {"steps": 200}, clip)) == 200


def test_c3_network_shrinks_with_the_patch_budget():
    from nvc_c3 import ratecontrol as rc
    from nvc_c3.presets import PRESETS

    def params(cfg, clip):
        return sum(math.prod(s) for _, s in rc.network_shapes(cfg.model, rc.patch_shape(cfg.model, clip)))

    clip = _clip(128, 72, 16)
    sized = [rc.configure(None, Target("bpp", b), {}, clip) for b in (0.04, 0.15, 1.2)]
    sizes = [params(c, clip) for c in sized]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3  # xs, s, then c3-fast's own network
    assert sized[-1].model.synthesis_widths == PRESETS["c3-fast"].model.synthesis_widths
    for cfg, bpp in zip(sized, (0.04, 0.15, 1.2)):  # the chosen network stays within its share of the payload
        assert rc.net_bytes(cfg.model, clip) <= rc.NET_SHARE * clip.payload_bytes(bpp) or cfg is sized[0]
    # 64x64x8 with a measured 344-byte header: the default is the smallest network, under 0.3 bpp
    tiny = _clip(64, 64, 8, overhead=344)
    default = rc.configure(None, None, {}, tiny)
    assert params(default, tiny) == min(sizes) and default.aim_bpp <= 0.3
    assert "decoder xs (253 network parameters a patch)" in rc.plan(default, tiny)["summary"]
    # a target below even the smallest network is refused before training; a fixed λ keeps the preset's network
    with pytest.raises(ConfigError, match="below c3's smallest stream"):
        rc.configure(None, Target("bpp", 0.5 * rc.smallest_bpp(default.model, tiny)), {}, tiny)
    assert rc.configure(None, None, {"lambda": 1e-3}, tiny).model.synthesis_widths == (12, 12)


def test_c3_cool_decoder_has_its_own_lambda_model():
    """c3-fast-cool's latents fall more slowly with λ (β 0.47 at 300 steps, fitted on the Bunny curve) than
    c3-fast's (0.65), and longer training codes fewer bits at a λ (the 900-step fit): its first λ is its own model
    at the encode's steps inverted, and its first correction follows that model's slope."""
    from nvc_c3 import ratecontrol as rc
    from nvc_c3.presets import PRESETS, total_steps

    cool = PRESETS["c3-fast-cool"].model
    (s0, *fit0), (s1, *fit1) = rc.COOL_FITS
    assert rc.lambda_model(cool, s0) == pytest.approx(fit0) and rc.lambda_model(cool, s1) == pytest.approx(fit1)
    assert rc.lambda_model(cool, 100) == rc.lambda_model(cool, s0) == rc.lambda_model(cool, None)
    assert rc.lambda_model(cool, 5000) == rc.lambda_model(cool, s1)  # outside the fits the nearest holds
    mid = rc.lambda_model(cool, round((s0 * s1) ** 0.5))  # halfway in log steps: halfway in β and log b_ref
    assert mid[1] == pytest.approx((fit0[1] + fit1[1]) / 2, abs=1e-3)
    assert mid[0] == pytest.approx((fit0[0] * fit1[0]) ** 0.5, rel=1e-3)
    assert rc.lambda_model(PRESETS["c3-intra"].model, s0)[1] == fit0[1]
    assert rc.lambda_model(PRESETS["c3-fast"].model, s1) == (rc.LATENT_BPP_AT_1E3, rc.BETA)
    clip = _clip(256, 144, 24, fps=25)
    lams = {}
    for steps in (300, 900):
        cfg = rc.configure("c3-fast-cool", Target("bitrate", 200_000), {"steps": steps}, clip)
        assert total_steps(cfg) == steps
        payload = clip.payload_bytes(cfg.aim_bpp)
        latent = payload - rc.patch_count(cfg.model, clip) * rc.net_bytes(cfg.model, clip)
        b_ref, beta = rc.lambda_model(cfg.model, steps)
        b = b_ref * (clip.segment_pixels / rc.REFERENCE_PIXELS) ** -rc.SIZE_EXPONENT
        assert 8 * latent / clip.segment_pixels == pytest.approx(b * (cfg.c3.rd_lambda / 1e-3) ** -beta)
        _, info = rc.correct(cfg, payload, round(1.3 * payload), clip)
        assert info["slope"] == pytest.approx(beta)
        lams[steps] = cfg.c3.rd_lambda
    assert lams[900] < 0.5 * lams[300]  # the 900-step encodes of that curve coded 35-60 % less at a λ
    # --time-limit cuts the steps before the λ is chosen, so the λ is the one for the steps that will run
    limited = rc.configure("c3-fast-cool", Target("bitrate", 200_000), {"steps": 900, "time_limit": 200}, clip)
    assert total_steps(limited) < 900
    assert limited.c3.rd_lambda == pytest.approx(rc.predicted_lambda(
        clip.payload_bytes(limited.aim_bpp), limited.model, clip, total_steps(limited)))
    cfg = rc.configure("c3-fast-cool", Target("bitrate", 200_000), {"steps": 300}, clip)
    # its plan's time estimate uses its own (slower) step time: 300 steps over 24 frames of 256x144
    assert rc.plan(cfg, clip)["estimated_s"] == pytest.approx(
        (rc.COOL_SECONDS_PER_PIXEL_STEP * 300 + rc.QUANTIZE_SECONDS_PER_PIXEL) * 24 * 256 * 144, rel=0.01)
    # c3-intra also searches its latents (3 sweeps per frame): the estimate counts them
    intra = rc.configure("c3-intra", Target("bitrate", 200_000), {"steps": 300}, clip)
    sweeps = intra.c3.final_rdo_passes + intra.c3.latent_rdo_passes
    assert sweeps == 3 and cfg.c3.final_rdo_passes + cfg.c3.latent_rdo_passes == 0
    assert rc.plan(intra, clip)["estimated_s"] == pytest.approx(
        (rc.COOL_SECONDS_PER_PIXEL_STEP * 300 + rc.QUANTIZE_SECONDS_PER_PIXEL
         + rc.SEARCH_SECONDS_PER_PIXEL_SWEEP * sweeps) * 24 * 256 * 144, rel=0.01)


def test_c3_corrects_lambda_once_in_the_right_direction():
    from nvc_c3 import ratecontrol as rc

    clip = _clip(256, 144, 16)
    cfg = rc.configure(None, Target("bpp", 0.5), {}, clip)
    assert rc.correct(cfg, 10_000, 10_300, clip) is None
    up, info = rc.correct(cfg, 10_000, 15_000, clip)
    down, _ = rc.correct(cfg, 10_000, 6_000, clip)
    assert up.c3.rd_lambda > cfg.c3.rd_lambda > down.c3.rd_lambda and info["from_bytes"] == 15_000
    # the second correction follows the slope the two encodes measured, and there is no third
    net = rc.patch_count(cfg.model, clip) * rc.net_bytes(cfg.model, clip)
    lam0, lam1 = cfg.c3.rd_lambda, up.c3.rd_lambda
    coded1 = net + (15_000 - net) * (lam0 / lam1) ** 1.0  # this clip's latents fall as λ^-1, not λ^-BETA
    again, info2 = rc.correct(up, 10_000, round(coded1), clip)
    assert info2["slope"] == pytest.approx(1.0, abs=0.01)
    predicted = net + (15_000 - net) * (lam0 / again.c3.rd_lambda)
    assert predicted == pytest.approx(10_000, rel=0.01)
    assert rc.correct(again, 10_000, 12_000, clip) is None and len(again.tried) == rc.MAX_CORRECTIONS
    # a flat, noisy pair (λ up, bytes barely down) moves λ no further in log λ than the first correction did
    flat, info3 = rc.correct(up, 10_000, 14_800, clip)
    assert info3["slope"] == rc.SLOPE_RANGE[0]
    assert flat.c3.rd_lambda / lam1 == pytest.approx(lam1 / lam0, rel=1e-9)


def test_eval_takes_lists_of_targets_as_rd_points():
    from nvc_pipe.eval.runner import parse_codecs, parse_targets

    values = parse_targets("bitrate", "100k,300k,1M")
    assert values == [100_000, 300_000, 1_000_000]
    curves = parse_codecs("hinerv:fast,c3:c3-fast,x264:medium", {}, None, ("bitrate", values))
    plugin = [c for c in curves if not c.is_anchor]
    assert [c.label for c in plugin] == ["hinerv:fast", "c3:c3-fast"]
    assert [(p.param, p.value) for p in plugin[0].points] == [("bitrate", v) for v in values]
    assert [p.value for p in parse_codecs("hinerv:fast", {}, None, ("quality", parse_targets("quality", "34,22")))[0]
            .points] == [22, 34]
    for kind, bad in (("bitrate", "100k,5x"), ("bpp", "0.1,-1"), ("quality", "20,99"), ("quality", "2.5")):
        with pytest.raises(ConfigError):
            parse_targets(kind, bad)


def test_plan_printer_warns_on_long_cpu_encodes(capsys):
    printer = cli._PlanPrinter(show=True, bar=False)
    assert printer({"summary": "net", "steps": 10, "estimated_s": 7200.0, "device": "cpu"}) is None
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nvc: plan: net") and "2.0 h" in err[0]
    assert len(err) == 2 and "warning" in err[1] and "--time-limit" in err[1]
    printer({"summary": "net", "steps": 10, "estimated_s": 600.0, "device": "cpu"})
    assert "warning" not in capsys.readouterr().err


def test_time_limit_caps_the_steps():
    from nvc_hinerv import codec

    clip = _clip(64, 64, 8)
    full = codec.configure(None, Target("bpp", 2.0), {}, clip)
    assert codec.configure(None, Target("bpp", 2.0), {"time_limit": 1e6}, clip).train == full.train
    capped = codec.configure(None, Target("bpp", 2.0), {"time_limit": 2.0}, clip)
    assert capped.train.epochs < full.train.epochs
    with pytest.raises(ConfigError, match="shorter than one training step"):
        codec.configure(None, Target("bpp", 2.0), {"time_limit": 1e-6}, clip)
