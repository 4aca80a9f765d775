"""Faults before and after the work: an unwritable output fails before training (exit 4), a full disk (a file-size
limit, EFBIG like ENOSPC) is exit 4 with nothing half-written left, a --ref that does not match keeps the decode."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys

import pytest
from media_factory import FFMPEG, run

from nvc_pipe import api
from nvc_pipe.errors import OutputError

TINY = ("--preset", "tiny", "--quiet")


def _clip(path, size="32x24", duration="0.16"):
    r = run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={duration}",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)])
    assert r.returncode == 0, r.stderr
    return path


def test_unwritable_output_fails_before_training(tmp_path, monkeypatch):
    src = _clip(tmp_path / "src.mp4")
    opened = []
    monkeypatch.setattr(api, "open_video", lambda *a, **k: opened.append(a) or pytest.fail("input opened"))
    with pytest.raises(OutputError, match="cannot write") as err:
        api.encode_file(str(src), "/proc/nvc-cannot-write.mkv", preset="tiny", device="cpu", progress=False)
    assert err.value.exit_code == 4 and opened == []


def test_full_disk_is_exit_4_and_leaves_nothing_half_written(tmp_path):
    src = _clip(tmp_path / "src.mp4")
    out = tmp_path / "out" / "x.mkv"
    out.parent.mkdir()

    def limit():  # every write past 3000 bytes fails with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "nvc_pipe", "encode", str(src), "-o", str(out), "--epochs", "1", *TINY]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, preexec_fn=limit, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    assert err.count("\n") == 1 and "internal error" not in err and "Traceback" not in err
    left = os.listdir(out.parent)
    assert "x.mkv" not in left and not [n for n in left if ".part" in n or n.endswith(".tmp")]
    if left:  # only a checkpoint with finished work, and the message says where
        assert left == ["x.mkv.nvc-partial"] and "--resume" in err


def test_ref_that_differs_keeps_the_decode(tmp_path, caplog):
    src = _clip(tmp_path / "src.mp4", duration="0.24")
    mkv = tmp_path / "x.mkv"
    api.encode_file(str(src), str(mkv), preset="tiny", device="cpu", progress=False)
    short = _clip(tmp_path / "short.mp4", duration="0.08")  # 2 of 6 frames
    other = _clip(tmp_path / "other.mp4", size="16x16")
    with caplog.at_level(logging.WARNING):
        report = api.decode_file(str(mkv), str(tmp_path / "a.y4m"), device="cpu", reference=str(short))
    assert report["frames"] == 6 and report["psnr_rgb"] is not None and (tmp_path / "a.y4m").exists()
    assert any("quality measured on the first 2" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = api.decode_file(str(mkv), str(tmp_path / "b.y4m"), device="cpu", reference=str(other))
    assert report["frames"] == 6 and "psnr_rgb" not in report
    assert any("no quality measured" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "b.y4m").stat().st_size > 6 * 32 * 24


def test_frames_smaller_than_the_ssim_window_encode(tmp_path):
    """2x2 and 3x5 videos (smaller than MS-SSIM's 5-pixel window) train on L1 alone instead of failing."""
    for size in ("2x2", "3x5"):
        src = tmp_path / f"s{size}.mkv"
        r = run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=8x8:rate=25:duration=0.08", "-vf",
                 f"scale={size.replace('x', ':')}", "-c:v", "ffv1", str(src)])
        assert r.returncode == 0, r.stderr
        out = tmp_path / f"s{size}.nvc.mkv"
        report = api.encode_file(str(src), str(out), preset="tiny", device="cpu", progress=False,
                                 overrides={"epochs": 2})
        assert report["frames"] == 2 and report["ms_ssim"] is None
        assert len(list(api.decode_frames(str(out), device="cpu"))) == 2


def _small_fs_works() -> bool:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def _encode_on_small_fs(tmp_path, src, size: int, *extra) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`nvc encode` with its output on a real tmpfs of `size` bytes (a private mount namespace: no privileges);
    returns the process and what the file system held afterwards."""
    mnt = tmp_path / f"fs{size}"
    mnt.mkdir()
    cmd = [sys.executable, "-m", "nvc_pipe", "encode", str(src), "-o", str(mnt / "x.mkv"), *TINY, *extra]
    listing = tmp_path / f"ls{size}"
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 99; shift 3; "$@"; rc=$?; ls -A "$0" > "$LS"; exit $rc'
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mnt), str(size),
                           str(mnt), "--", *cmd], capture_output=True, timeout=300,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", LS=str(listing)))
    assert proc.returncode != 99, proc.stderr
    return proc, listing.read_text().split()


def _disk_estimate(src, epochs: int) -> dict:
    """What the encode will ask for: the plan of the same configuration, through diskcheck.estimate."""
    from nvc_pipe.diskcheck import estimate
    from nvc_pipe.media.demux import open_video
    from nvc_pipe.plugins import load_codec

    plugin = load_codec("hinerv")
    with open_video(str(src)) as video:
        seg = next(video.segments(None))
        cfg, clip = api.clip_for(plugin, "tiny", None, {"epochs": epochs}, video.info, len(seg), None,
                                 api.resolve_device("cpu"))
    return estimate(plugin.plan(cfg, clip), clip)


@pytest.mark.skipif(not _small_fs_works(), reason="no unprivileged mount namespaces (unshare) on this machine")
def test_free_disk_below_the_estimate_is_exit_4_before_training(tmp_path):
    """On a real small file system: less free than the plan's output + checkpoints is refused at once (exit 4, one
    line, nothing written); as much as the estimate is enough for the whole encode."""
    src = _clip(tmp_path / "src.mp4", size="64x48")
    need = _disk_estimate(src, 1)["total"]
    page = 4096
    short = (need // page - 1) * page  # tmpfs sizes are whole pages
    proc, left = _encode_on_small_fs(tmp_path, src, short, "--epochs", "1")
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    assert err.count("\n") == 1 and "not enough free disk" in err and "checkpoints" in err, err
    assert left == []
    proc, left = _encode_on_small_fs(tmp_path, src, -(-need // page) * page, "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert left == ["x.mkv"]
