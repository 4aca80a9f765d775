"""Matroska track entries for the audio and subtitle streams copied beside the NVC track.

Our MKV writer (:mod:`nvc_pipe.media.matroska`) needs, for every stream it copies, the Matroska CodecID and
CodecPrivate and the Audio element. This module maps FFmpeg codec names (PyAV streams) to them for the common
codecs. A stream whose codec has no mapping here, or whose CodecPrivate cannot be built (AAC without an
AudioSpecificConfig, as in ADTS/MPEG-TS input), is not copied: :func:`track_for` returns the reason and the caller
logs one warning line and drops that stream.
"""

from __future__ import annotations

from typing import Any

from . import ebml as E
from .matroska import TrackSpec

# FFmpeg codec name -> Matroska CodecID, for codecs whose CodecPrivate is FFmpeg's extradata as is (or none).
_AUDIO = {
    "aac": "A_AAC", "opus": "A_OPUS", "mp3": "A_MPEG/L3", "mp2": "A_MPEG/L2", "mp1": "A_MPEG/L1", "ac3": "A_AC3",
    "eac3": "A_EAC3", "dts": "A_DTS", "truehd": "A_TRUEHD", "alac": "A_ALAC", "tta": "A_TTA1",
    "pcm_s16le": "A_PCM/INT/LIT", "pcm_s24le": "A_PCM/INT/LIT", "pcm_s32le": "A_PCM/INT/LIT",
    "pcm_u8": "A_PCM/INT/LIT", "pcm_s16be": "A_PCM/INT/BIG", "pcm_s24be": "A_PCM/INT/BIG",
    "pcm_s32be": "A_PCM/INT/BIG", "pcm_f32le": "A_PCM/FLOAT/IEEE", "pcm_f64le": "A_PCM/FLOAT/IEEE",
}
_PCM_BITS = {"pcm_u8": 8, "pcm_s16le": 16, "pcm_s16be": 16, "pcm_s24le": 24, "pcm_s24be": 24, "pcm_s32le": 32,
             "pcm_s32be": 32, "pcm_f32le": 32, "pcm_f64le": 64}
_SUBTITLE = {
    "subrip": "S_TEXT/UTF8", "srt": "S_TEXT/UTF8", "text": "S_TEXT/UTF8", "ass": "S_TEXT/ASS", "ssa": "S_TEXT/SSA",
    "webvtt": "S_TEXT/WEBVTT",
    "dvd_subtitle": "S_VOBSUB", "hdmv_pgs_subtitle": "S_HDMV/PGS", "dvb_subtitle": "S_DVBSUB",
}
SUPPORTED = tuple(sorted({*_AUDIO, "vorbis", "flac", *_SUBTITLE}))


def _codec_name(stream: Any) -> str:
    ctx = getattr(stream, "codec_context", None)
    return str(getattr(ctx, "name", "") or "") if ctx is not None else ""


def _xiph_lace(headers: list[bytes]) -> bytes:
    """Matroska's Vorbis CodecPrivate: count-1, Xiph-laced sizes of all but the last header, the headers."""
    out = bytearray([len(headers) - 1])
    for h in headers[:-1]:
        n = len(h)
        out += b"\xff" * (n // 255) + bytes([n % 255])
    return bytes(out) + b"".join(headers)


def _vorbis_private(extradata: bytes) -> bytes | None:
    """Vorbis extradata in FFmpeg's layout (three 16-bit-length-prefixed headers) or already Xiph-laced."""
    if extradata[:1] == b"\x02":
        return extradata
    headers, pos = [], 0
    while pos + 2 <= len(extradata) and len(headers) < 3:
        n = int.from_bytes(extradata[pos:pos + 2], "big")
        headers.append(extradata[pos + 2:pos + 2 + n])
        pos += 2 + n
    if len(headers) != 3 or any(not h for h in headers):
        return None
    return _xiph_lace(headers)


def _flac_private(extradata: bytes) -> bytes | None:
    if extradata[:4] == b"fLaC":
        return extradata
    if len(extradata) >= 34:  # a bare STREAMINFO block: add the marker and a last-block header
        return b"fLaC" + bytes([0x80]) + (34).to_bytes(3, "big") + extradata[:34]
    return None


def track_for(stream: Any) -> tuple[TrackSpec | None, str]:
    """The Matroska track that carries a copy of ``stream`` (a PyAV audio/subtitle stream), or ``(None, why)``."""
    codec = _codec_name(stream)
    ctx = stream.codec_context
    extradata = bytes(getattr(ctx, "extradata", None) or b"")
    entry: list[bytes] = []
    meta = {str(k).lower(): str(v) for k, v in stream.metadata.items()}
    if meta.get("title"):
        entry.append(E.string(0x536E, meta["title"]))
    language = meta.get("language", "und")
    if language.isascii() and 2 <= len(language) <= 3 and language.isalpha():
        entry.append(E.string(0x22B59C, language.lower()))
    disposition = int(getattr(stream, "disposition", 0) or 0)
    entry.append(E.uint(0x88, 1 if disposition & 1 else 0))  # FlagDefault
    if disposition & 0x40:
        entry.append(E.uint(0x55AA, 1))  # FlagForced
    if stream.type == "audio":
        private: bytes | None = extradata
        if codec == "vorbis":
            private, codec_id = _vorbis_private(extradata), "A_VORBIS"
        elif codec == "flac":
            private, codec_id = _flac_private(extradata), "A_FLAC"
        elif codec in _AUDIO:
            codec_id = _AUDIO[codec]
            if codec == "aac" and not extradata:
                return None, "AAC without an AudioSpecificConfig (ADTS input)"
            if codec.startswith("pcm_"):
                private = b""
        else:
            return None, f"no Matroska mapping for audio codec {codec or '?'}"
        if private is None:
            return None, f"{codec} extradata is missing or malformed"
        rate = int(getattr(ctx, "sample_rate", 0) or 0)
        channels = int(getattr(ctx, "channels", 0) or 0)
        audio = [E.double(0xB5, float(rate or 8000)), E.uint(0x9F, channels or 1)]
        if codec in _PCM_BITS:
            audio.append(E.uint(0x6264, _PCM_BITS[codec]))
        entry.append(E.master(0xE1, *audio))
        if codec == "opus" and len(private) >= 12:
            pre_skip = int.from_bytes(private[10:12], "little")
            entry += [E.uint(0x56AA, pre_skip * 1_000_000_000 // 48000), E.uint(0x56BB, 80_000_000)]
        return TrackSpec("audio", codec_id, private, entry), ""
    if stream.type == "subtitle":
        if codec not in _SUBTITLE:
            return None, f"no Matroska mapping for subtitle codec {codec or '?'}"
        return TrackSpec("subtitle", _SUBTITLE[codec], extradata, entry), ""
    return None, f"{stream.type} streams are not copied"
