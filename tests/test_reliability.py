"""Reliability properties (docs/reliability.md): no code execution or file access driven by stream data,
reproducible encodes and decodes, and no partial output left by a decode that fails half-way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_nvc, run_nvc_each

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = [ROOT / "nvc_pipe", ROOT / "plugins"]


# ---------------------------------------------------------------------------------------------------------------
# (a) no code execution from data
# ---------------------------------------------------------------------------------------------------------------
def _sources() -> list[Path]:
    files = sorted(p for d in SOURCE_DIRS for p in d.rglob("*.py"))
    assert len(files) > 20, files
    return files


# modules that can run code or rebuild arbitrary objects from bytes
_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve",
                      "jsonpickle"}


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif parts:  # a method of a computed object (`model.to(d).eval()`): not the builtin
        parts.append("<expr>")
    return ".".join(reversed(parts))


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(root)
    out = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _FORBIDDEN_MODULES:
                    out.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
                out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            short = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                out.append(f"{where}: {name}(...)")
            elif name == "torch.load" or (short == "load" and name.endswith("torch.load")):
                if not _is_const(_keyword(node, "weights_only"), True):
                    out.append(f"{where}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _is_const(_keyword(node, "allow_pickle"), True):
                out.append(f"{where}: np.load(allow_pickle=True)")
            elif name.startswith("yaml.") and short in ("load", "load_all", "unsafe_load", "full_load",
                                                        "unsafe_load_all"):
                out.append(f"{where}: {name} (use yaml.safe_load)")
            elif name in ("os.system", "os.popen", "os.execv", "os.execvp", "os.execl", "os.spawnl", "pty.spawn"):
                out.append(f"{where}: {name}")
            elif _is_const(_keyword(node, "shell"), True):
                out.append(f"{where}: {name}(shell=True)")
            elif name in ("importlib.import_module", "import_module") and node.args and not isinstance(
                    node.args[0], ast.Constant):
                out.append(f"{where}: import_module with a computed name")
    return out


def test_no_code_execution_primitives_in_the_sources():
    found = [v for p in _sources() for v in _violations(p)]
    assert not found, "forbidden constructs:\n" + "\n".join(found)


def test_scanner_catches_what_it_forbids(tmp_path):
    """The scan above is only worth something if it flags each forbidden form (and spares look-alikes)."""
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""
        import pickle, marshal
        from shelve import open as sopen
        import torch, yaml, subprocess, numpy as np, os
        eval("1"); exec("x = 1")
        torch.load("x.pt"); torch.load("x.pt", weights_only=False)
        yaml.load("a: 1"); np.load("x.npy", allow_pickle=True)
        subprocess.run("ls", shell=True); os.system("ls")
    """))
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""
        import torch, yaml, subprocess, numpy as np
        model.eval(); torch.load("x.pt", weights_only=True); yaml.safe_load("a: 1")
        np.load("x.npz", allow_pickle=False); subprocess.run(["ls"], shell=False)
        import importlib; importlib.import_module("nvc_pipe.api")
    """))
    assert len(_violations(bad, tmp_path)) == 11, _violations(bad, tmp_path)
    assert _violations(good, tmp_path) == []


def test_mkv_tags_are_plain_strings_and_never_opened(tmp_path, tiny_streams):
    """Tags come back as str -> str, and decoding an MKV whose tags are paths never touches those paths.

    Review (nvc_pipe/api.py, media/mux.py, media/sink.py): `read_stream` drops the tags (`_tags`); the only path
    a decode opens is the input itself (also as `audio_from` for copied audio) and the output; the codec name in
    the sequence header only selects among installed entry points. The test checks this at run time with an
    audit hook (PEP 578) that records every file-system event of a real decode.
    """
    from nvc_pipe.bitstream.spec import parse_stream_header, split_access_units
    from nvc_pipe.media.clip import VideoInfo
    from nvc_pipe.media.mux import Packet, read_mkv, write_mkv

    secret = tmp_path / "SENTINEL_secret.y4m"
    secret.write_bytes(b"do not open")
    data = tiny_streams["nvc"].read_bytes()
    seq, rest = parse_stream_header(data)
    header = data[: len(data) - len(rest)]
    aus = list(split_access_units(rest))
    tags = {"NVC_CODEC": "hinerv", "title": str(secret), "source": "../SENTINEL_secret.y4m",
            "output": str(tmp_path / "SENTINEL_out.y4m"), "audio_from": str(secret), "url": "file://" + str(secret)}
    info = VideoInfo(seq.width, seq.height, seq.pix_fmt, seq.fps, seq.time_base, seq.color_range, seq.colorspace)
    mkv = tmp_path / "tagged.mkv"
    packets, first = [], 0
    for i, au in enumerate(aus):
        n = int.from_bytes(au[16:20], "little")  # AU01 box: type, length, segment_index, first_frame, frame_count
        packets.append(Packet(au, seq.pts[first], max(1, n)))
        first += n
    write_mkv(str(mkv), header, packets, info, tags)
    _header, got, pk = read_mkv(str(mkv))
    list(pk)
    assert got == tags and all(type(k) is str and type(v) is str for k, v in got.items())

    script = textwrap.dedent(f"""
        import sys, json
        events = []
        def hook(event, args):
            if event in ("open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.mkdir", "os.symlink",
                         "os.link", "os.chmod", "shutil.copyfile", "shutil.rmtree", "subprocess.Popen", "os.system",
                         "os.exec", "os.posix_spawn", "ctypes.dlopen", "socket.connect"):
                events.append([event, repr(args)[:300]])
        sys.addaudithook(hook)
        from nvc_pipe import api
        api.decode_file({str(mkv)!r}, {str(tmp_path / 'out.y4m')!r}, device="cpu")
        api.inspect_file({str(mkv)!r})
        print(json.dumps(events))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(proc.stdout.strip().splitlines()[-1])
    touched = [e for e in events if "SENTINEL" in e[1]]
    assert not touched, touched
    assert any("tagged.mkv" in e[1] for e in events)  # the hook does see the decoder's own opens
    assert not [e for e in events if e[0] in ("subprocess.Popen", "os.system", "os.exec", "socket.connect")]


# ---------------------------------------------------------------------------------------------------------------
# (b) determinism
# ---------------------------------------------------------------------------------------------------------------
def _write_y4m(path: Path, w: int, h: int, n: int) -> Path:
    yy, xx = np.mgrid[0:h, 0:w]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(n):
            f.write(b"FRAME\n")
            f.write((40 + (xx * 5 + yy * 3 + t * 9) % 160).astype(np.uint8).tobytes())
            f.write(np.full((h // 2, w // 2), 100 + 10 * t, np.uint8).tobytes())
            f.write(np.full((h // 2, w // 2), 150 - 5 * t, np.uint8).tobytes())
    return path


ENCODE = ["--preset", "tiny", "--epochs", "2", "--seed", "3", "--segment-frames", "2", "--device", "cpu", "-q", "-y"]


@pytest.fixture(scope="module")
def tiny_streams(tmp_path_factory) -> dict[str, Path]:
    """The same 32x32x5 clip encoded once to .nvc and twice to .mkv, each in a fresh process (3 segments): three
    independent encodes of one elementary stream (a .nvc file is that stream, bare)."""
    d = tmp_path_factory.mktemp("determinism")
    src = _write_y4m(d / "in.y4m", 32, 32, 5)
    out = {"src": src}
    for name in ("nvc", "mkv", "mkv2"):
        path = d / f"{name}.{name[:3]}"
        r = run_nvc("encode", str(src), "-o", str(path), *ENCODE)
        assert r.returncode == 0, r.stderr
        out[name] = path
    return out


def _mkv_stream(path):
    from nvc_pipe.media.mux import read_mkv

    header, tags, packets = read_mkv(str(path))
    return header, tags, [(p.payload, p.pts, p.duration) for p in packets]


def _elementary(path) -> bytes:
    header, _tags, packets = _mkv_stream(path)
    return header + b"".join(p for p, _, _ in packets)


def test_encode_twice_gives_identical_stream_bytes(tiny_streams):
    # the .nvc encode against the stream of another process's encode (the second MKV)
    a, b = tiny_streams["nvc"].read_bytes(), _elementary(tiny_streams["mkv2"])
    assert len(a) > 100
    assert a == b, "two CPU encodes with the same seed differ"


def test_encode_to_mkv_twice_gives_identical_streams(tiny_streams):
    assert _mkv_stream(tiny_streams["mkv"]) == _mkv_stream(tiny_streams["mkv2"])
    # and the elementary stream in the MKV is the bare .nvc one
    assert _elementary(tiny_streams["mkv"]) == tiny_streams["nvc"].read_bytes()


def test_mkv_file_bytes_are_reproducible(tiny_streams):
    """Byte-identical MKV files need FFmpeg's bitexact mode (random segment/track UIDs otherwise)."""
    a, b = tiny_streams["mkv"].read_bytes(), tiny_streams["mkv2"].read_bytes()
    if a != b:
        diff = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
        pytest.fail(f"MKV files of identical streams differ in {diff} bytes (lengths {len(a)}, {len(b)}): "
                    "the Matroska muxer writes random UIDs unless the output is opened with fflags=+bitexact")


@pytest.mark.parametrize("kind", ["nvc", "mkv"])
def test_decode_twice_in_fresh_processes_is_byte_identical(tiny_streams, tmp_path, kind):
    outs = []
    for i in range(2):
        out = tmp_path / f"x{i}.y4m"
        r = run_nvc("decode", str(tiny_streams[kind]), "-o", str(out), "--device", "cpu")
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert len(outs[0]) > 5 * 32 * 32
    assert outs[0] == outs[1]


# ---------------------------------------------------------------------------------------------------------------
# (c) a decode that fails half-way leaves nothing behind
# ---------------------------------------------------------------------------------------------------------------
def _corrupt_last_au(data: bytes) -> bytes:
    from nvc_pipe.bitstream.spec import parse_stream_header, split_access_units

    _seq, rest = parse_stream_header(data)
    aus = list(split_access_units(rest))
    assert len(aus) >= 2
    last = bytearray(aus[-1])
    last[len(last) // 2] ^= 0x40  # inside the payload: the CRC catches it when that AU is reached
    return data[: len(data) - len(rest)] + b"".join(aus[:-1]) + bytes(last)


OUTPUT_KINDS = [".y4m", ".yuv", ".mkv"]


@pytest.fixture(scope="module")
def corrupt_decodes(tiny_streams, tmp_path_factory):
    """`nvc decode` of the stream with its last AU corrupted into each output kind, each in an empty folder of its
    own: one process per decode, one interpreter start for all (run_nvc_each)."""
    d = tmp_path_factory.mktemp("corrupt")
    bad = d / "bad.nvc"
    bad.write_bytes(_corrupt_last_au(tiny_streams["nvc"].read_bytes()))
    outs = {ext: d / ext.strip(".") / f"decoded{ext}" for ext in OUTPUT_KINDS}
    for out in outs.values():
        out.parent.mkdir()
    results = run_nvc_each(*[("decode", str(bad), "-o", str(out), "--device", "cpu") for out in outs.values()])
    return {ext: (r, outs[ext]) for ext, r in zip(OUTPUT_KINDS, results)}


@pytest.mark.parametrize("ext", OUTPUT_KINDS)
def test_corrupt_last_access_unit_leaves_no_output(corrupt_decodes, ext):
    r, out = corrupt_decodes[ext]
    outdir = out.parent
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr.decode().count("\n") == 1 and "CRC" in r.stderr.decode(), r.stderr
    assert not out.exists()
    assert list(outdir.iterdir()) == [], "partial output left behind"


def test_corrupt_last_block_of_mkv_leaves_no_output(tiny_streams, tmp_path):
    """The same through MKV: the block is still a well-formed Matroska block, its AU fails its CRC."""
    from nvc_pipe.bitstream.spec import parse_stream_header
    from nvc_pipe.media.clip import VideoInfo
    from nvc_pipe.media.mux import Packet, read_mkv, write_mkv
    header, tags, packets = read_mkv(str(tiny_streams["mkv"]))
    packets = list(packets)
    last = bytearray(packets[-1].payload)
    last[len(last) // 2] ^= 0x40
    packets[-1] = Packet(bytes(last), packets[-1].pts, packets[-1].duration)
    seq, _ = parse_stream_header(header)
    info = VideoInfo(seq.width, seq.height, seq.pix_fmt, seq.fps, seq.time_base, seq.color_range, seq.colorspace)
    bad = tmp_path / "bad.mkv"
    write_mkv(str(bad), header, packets, info, tags)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = run_nvc("decode", str(bad), "-o", str(outdir / "decoded.y4m"), "--device", "cpu")
    assert r.returncode == 3, r.stderr
    assert list(outdir.iterdir()) == []
