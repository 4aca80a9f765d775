"""Mutation fuzzer for the decode path: stream parser, entropy decoder, model rebuild, MKV demux, y4m sink.

    python -m nvc_pipe.fuzz --cases 10000 --seed 0 [--corpus DIR] [--workers 2] [--timeout 5]
    python -m nvc_pipe.fuzz --seed 0 --corpus DIR --case 1234 [--dump case.bin]   # replay one case, in-process
    python -m nvc_pipe.fuzz --replay FILE                                         # decode one saved file

No hypothesis, no coverage feedback: a fixed menu of mutations applied to a few real tiny streams that the
fuzzer makes itself (``encode_file(..., preset="tiny")`` on 32x32 and 24x16 clips of 3 frames, as bare .nvc and
as MKV), plus streams synthesized from random small HiNeRV configs (valid by construction, so header and model
mutations get past the tensor-shape check and reach the renderer). Case ``i`` of seed ``S`` is a pure function
of ``(S, i)`` and the seed streams, so ``--case i`` replays it (keep the seeds with ``--corpus DIR``).

Mutation families (``family`` column of the summary):

* byte level, no repair: ``bitflip``, ``byteset``, ``truncate``, ``splice`` (on .nvc and .mkv files);
* structure: ``boxlen`` (a box length set to 0/huge/±1, optionally with a CRC planted where the new length puts
  it), ``sections`` (access units dropped, duplicated, reordered, swapped between seeds, SEQH duplicated/moved,
  header only, no header, bad magic/version), ``random`` (valid magic then random bytes, or CRC-valid boxes of
  random bytes);
* CRC-fixed (the box is re-packed with its length and CRC recomputed, so the mutation reaches the parsers
  behind the CRC): ``crc_bytes`` (bit flips, byte sets, cuts, inserts inside a box payload), ``crc_field`` (one
  parsed field - box/AU/header u32, string and blob lengths, tensor count, ndim, dims, kind, bits, axis, mask
  flag, categorical-block symbol count, min, bins, frequencies, word count - set to 0/1/±1/2^k/huge, varints
  re-encoded, also overlong), ``json`` (codec_config: keys dropped/added, wrong types, 0/negative/huge/NaN/inf
  values, long lists, deep nesting, invalid UTF-8), ``header`` (sequence header fields: size, pix_fmt, range,
  colorspace, fps, time base, frame/segment counts, pts modes, codec name, payload version), ``synth`` (a valid
  synthesized stream, half of them then mutated like ``crc_bytes``/``crc_field``);
* MKV: every structured family is written as MKV (``write_mkv``) for ~20 % of its cases; ``mkv_tags`` (the
  NVC_MUX_* tags, NVC_MUX_KEYS and DURATION set to odd values), ``mkv_tagbytes`` (bytes of tag strings
  overwritten in place, invalid UTF-8 included).

Every case runs in a worker process (reused: torch is imported once per worker): ``read_stream`` then
``iter_decoded`` over every frame on CPU (about one case in ten goes through ``decode_file`` to a .y4m instead,
checking that a failed decode leaves no file behind), and ``inspect_file`` for a third of the CRC-fixed and
structural cases. The
parent is the watchdog: a case running longer than ``--timeout`` is a *hang*; a case whose resident memory grows
by more than ``--mem-mb`` MiB + 100 x its input size (RSS polled every ~10 ms, plus the worker's ru_maxrss) is an
*oom*. Both kill the worker (after asking it for a Python stack with SIGUSR1) and start a fresh one.

Outcomes: ``ok`` (decoded, frames of the right shape and count), ``error`` (an ``NvcError`` with a one-line
message), ``crash`` (any other exception, an ``NvcError`` with an empty or multi-line message, a broken decoder
invariant, a leftover output file, or a dead worker), ``hang``, ``oom``. Exit status 1 on any crash, hang or
oom; the failing inputs are written to the findings directory (``--findings``, default ``DIR/findings`` with
``--corpus DIR``, else a temporary directory that is kept and printed).
"""

from ..bitstream.spec import MAGIC
from .harness import fuzz, main
from .mutate import generate
from .streams import au_fields, load_seeds, make_seeds, seqh_fields
from .worker import run_case

__all__ = ["MAGIC", "au_fields", "fuzz", "generate", "load_seeds", "main", "make_seeds", "run_case", "seqh_fields"]
