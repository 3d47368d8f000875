"""Stream facts of an MP4 clip read in-process (no ffmpeg): codec, size, frame rate, pixel
format, duration and whether it has audio, as :func:`reelforge.media.ffmpeg.probe` reports them.

Only what this module can be sure of is answered: H.264 (avc1/avc3) and HEVC (hvc1/hev1)
video in a plain (not fragmented) ISO-BMFF file, its first video track, one sample
description. Anything else raises :class:`Unsupported`, and the caller asks ffmpeg.

Values follow ffmpeg's conventions so that facts read here and facts from ``probe()``
compare equal: ``codec`` is ffmpeg's codec name, ``pix_fmt`` the pixel format its decoder
outputs (``yuvj420p`` for full-range 8-bit 4:2:0, ``yuv420p10le`` ...), ``fps`` the average
frame rate from the sample table rounded as ffmpeg prints it, ``width``/``height`` the
cropped picture size from the sequence parameter set. ``duration`` is the movie header's,
in seconds, not rounded (ffmpeg prints it to the hundredth).
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

#: Sample entries read here -> ffmpeg's codec name.
CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}

#: Top-level box types an MP4 may start with; anything else is not an MP4 to this reader.
_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"styp", b"uuid"}

_FIRST_READ = 64 * 1024
_U32 = struct.Struct(">I")
_BOX = struct.Struct(">I4s")


class Unsupported(Exception):
    """This clip is not one the reader can describe with certainty (not MP4, another codec,
    fragmented, several sample descriptions, an unusual bitstream...): ask ffmpeg."""


def read_facts(path: str | os.PathLike) -> dict[str, Any]:
    """``{"duration", "width", "height", "fps", "codec", "pix_fmt", "has_audio"}`` of the MP4
    at ``path``, as :func:`reelforge.media.ffmpeg.probe` gives them. Raises :class:`Unsupported`
    when unsure, OSError when the file cannot be read."""
    try:
        return _read_facts(path)
    except (struct.error, IndexError, ValueError) as exc:  # a box or parameter set cut short
        raise Unsupported(f"malformed MP4: {exc}") from exc


def _read_facts(path: str | os.PathLike) -> dict[str, Any]:
    moov = _read_moov(path)
    video = None
    has_audio = False
    for kind, body in _children(moov):
        if kind == b"mvex":
            raise Unsupported("fragmented MP4")
        if kind != b"trak":
            continue
        mdia = _child(body, b"mdia")
        handler = _handler(mdia)
        if handler == b"soun":
            has_audio = True
        elif handler == b"vide" and video is None:
            video = mdia
    if video is None:
        raise Unsupported("no video track")
    timescale, duration = _movie_header(moov)
    facts = _video_facts(video)
    facts["duration"] = duration / timescale
    facts["has_audio"] = has_audio
    return facts


# -- boxes ----------------------------------------------------------------------------

def _read_moov(path: str | os.PathLike) -> bytes:
    """The body of the top-level moov box, wherever it is in the file (one read when it
    is near the start, as with +faststart; a seek past mdat otherwise)."""
    with open(path, "rb") as f:
        buf = f.read(_FIRST_READ)
        if len(buf) < 8 or buf[4:8] not in _TOP_LEVEL:
            raise Unsupported("not an MP4 file")
        base = 0  # file offset of buf[0]
        offset = 0
        while True:
            rel = offset - base
            if rel + 16 > len(buf):  # the next box header is not (all) in buf: read on
                f.seek(offset)
                chunk = f.read(_FIRST_READ)
                if len(chunk) < 8:
                    raise Unsupported("no moov box")
                base, buf, rel = offset, chunk, 0
            size, kind = _BOX.unpack_from(buf, rel)
            header = 8
            if size == 1:
                size, header = struct.unpack_from(">Q", buf, rel + 8)[0], 16
            elif size == 0:
                size = os.fstat(f.fileno()).st_size - offset
            if size < header:
                raise Unsupported(f"bad box size {size} at {offset}")
            if kind == b"moov":
                if rel + size <= len(buf):
                    return buf[rel + header:rel + size]
                f.seek(offset + header)
                body = f.read(size - header)
                if len(body) != size - header:
                    raise Unsupported("truncated moov box")
                return body
            offset += size


def _children(data: bytes, start: int = 0, end: int | None = None):
    """(type, body) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = _BOX.unpack_from(data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Unsupported(f"bad {kind!r} box")
        yield kind, data[pos + header:pos + size]
        pos += size


def _child(data: bytes, kind: bytes) -> bytes:
    for k, body in _children(data):
        if k == kind:
            return body
    raise Unsupported(f"no {kind.decode('latin-1')} box")


def _time_header(body: bytes) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd box."""
    if not body:
        raise Unsupported("empty header box")
    if body[0] == 1:
        timescale, duration = struct.unpack_from(">IQ", body, 20)
    else:
        timescale, duration = struct.unpack_from(">II", body, 12)
    return timescale, duration


def _movie_header(moov: bytes) -> tuple[int, int]:
    timescale, duration = _time_header(_child(moov, b"mvhd"))
    if not timescale or not duration or duration in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        raise Unsupported("no movie duration")
    return timescale, duration


def _handler(mdia: bytes) -> bytes:
    hdlr = _child(mdia, b"hdlr")
    return hdlr[8:12]


def _video_facts(mdia: bytes) -> dict[str, Any]:
    timescale, _ = _time_header(_child(mdia, b"mdhd"))
    stbl = _child(_child(mdia, b"minf"), b"stbl")
    stsd = _child(stbl, b"stsd")
    if _U32.unpack_from(stsd, 4)[0] != 1:
        raise Unsupported("several sample descriptions")
    [(entry_type, entry)] = list(_children(stsd, 8))
    codec = CODECS.get(entry_type)
    if codec is None:
        raise Unsupported(f"sample entry {entry_type!r}")
    # VisualSampleEntry: 8 bytes of SampleEntry, 70 of visual fields, then boxes.
    config_type = b"avcC" if codec == "h264" else b"hvcC"
    config = _child(entry[78:], config_type)
    params = _h264_config(config) if codec == "h264" else _hevc_config(config)
    return {"width": params[0], "height": params[1], "fps": _fps(_child(stbl, b"stts"), timescale),
            "codec": codec, "pix_fmt": params[2]}


def _fps(stts: bytes, timescale: int) -> float | None:
    """Average frame rate as ffmpeg's mov demuxer computes it (samples x timescale / total
    duration, from stts) and rounded as ffmpeg prints it."""
    (entries,) = _U32.unpack_from(stts, 4)
    if len(stts) < 8 + 8 * entries:
        raise Unsupported("truncated stts")
    samples = duration = 0
    for count, delta in struct.iter_unpack(">II", stts[8:8 + 8 * entries]):
        samples += count
        duration += count * delta
    if not samples or not duration or not timescale:
        return None
    return _printed_fps(samples * timescale / duration)


def _printed_fps(fps: float) -> float:
    # ffmpeg prints "%1.0f" for whole rates and "%3.2f" otherwise; probe() parses that text.
    centi = round(fps * 100)
    return float(round(fps)) if centi and centi % 100 == 0 else float(f"{fps:.2f}")


# -- bitstreams -----------------------------------------------------------------------

class _Bits:
    """An MSB-first bit reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise Unsupported("parameter set ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise Unsupported("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _pix_fmt(chroma: int, depth: int, full_range: bool, matrix: int | None, *, j444: bool) -> str:
    """The pixel format ffmpeg's H.264/HEVC decoders output for these stream parameters.
    ``j444``: whether full range maps to yuvj for 4:2:2/4:4:4 too (H.264) or only 4:2:0 (HEVC)."""
    if chroma not in (1, 2, 3) or depth not in (8, 9, 10, 12, 14):
        raise Unsupported(f"chroma format {chroma} at {depth} bits")
    if chroma == 3 and matrix == 0:
        raise Unsupported("RGB coded as 4:4:4")  # ffmpeg outputs gbrp*: rare, let it say so
    layout = {1: "420", 2: "422", 3: "444"}[chroma]
    if depth == 8:
        j = full_range and (chroma == 1 or j444)
        return f"yuv{'j' if j else ''}{layout}p"
    return f"yuv{layout}p{depth}le"


_H264_HIGH = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@functools.lru_cache(maxsize=64)
def _h264_config(avcc: bytes) -> tuple[int, int, str]:
    """(width, height, pix_fmt) from an avcC box's first SPS."""
    if len(avcc) < 8 or avcc[0] != 1 or not avcc[5] & 0x1F:
        raise Unsupported("bad avcC")
    (length,) = struct.unpack_from(">H", avcc, 6)
    sps = avcc[8:8 + length]
    if len(sps) != length or not sps or sps[0] & 0x1F != 7:
        raise Unsupported("no SPS in avcC")
    b = _Bits(_rbsp(sps[1:]))
    profile = b.u(8)
    b.u(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma, depth, separate_planes = 1, 8, 0
    if profile in _H264_HIGH:
        chroma = b.ue()
        if chroma == 3:
            separate_planes = b.u(1)
        depth = b.ue() + 8
        if b.ue() + 8 != depth:
            raise Unsupported("luma and chroma bit depths differ")
        b.u(1)  # qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    _skip_h264_scaling_list(b, 16 if i < 6 else 64)
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (b.ue() + 1) * 16
    height_units = b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        raise Unsupported("interlaced H.264")
    height = height_units * 16
    b.u(1)  # direct_8x8_inference_flag
    if b.u(1):  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        if separate_planes:
            unit_x, unit_y = 1, 1
        else:
            unit_x, unit_y = (1 if chroma == 3 else 2), (2 if chroma == 1 else 1)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if separate_planes:
        raise Unsupported("separate colour planes")
    full_range, matrix = _vui_colour(b) if b.u(1) else (False, None)
    return width, height, _pix_fmt(chroma, depth, full_range, matrix, j444=True)


def _skip_h264_scaling_list(b: _Bits, size: int) -> None:
    scale = 8
    for _ in range(size):  # deltas until the next scale is 0 (the rest repeat the last one)
        scale = (scale + b.se()) % 256
        if not scale:
            return


def _vui_colour(b: _Bits) -> tuple[bool, int | None]:
    """(video_full_range_flag, matrix_coefficients) from the start of VUI parameters (the
    same in H.264 and HEVC up to there)."""
    if b.u(1):  # aspect_ratio_info_present_flag
        if b.u(8) == 255:
            b.u(32)
    if b.u(1):  # overscan_info_present_flag
        b.u(1)
    if not b.u(1):  # video_signal_type_present_flag
        return False, None
    b.u(3)  # video_format
    full_range = bool(b.u(1))
    matrix = None
    if b.u(1):  # colour_description_present_flag
        b.u(16)
        matrix = b.u(8)
    return full_range, matrix


@functools.lru_cache(maxsize=64)
def _hevc_config(hvcc: bytes) -> tuple[int, int, str]:
    """(width, height, pix_fmt) from an hvcC box's first SPS."""
    if len(hvcc) < 23 or hvcc[0] != 1:
        raise Unsupported("bad hvcC")
    pos = 23
    for _ in range(hvcc[22]):
        nal_type = hvcc[pos] & 0x3F
        (count,) = struct.unpack_from(">H", hvcc, pos + 1)
        pos += 3
        for _ in range(count):
            (length,) = struct.unpack_from(">H", hvcc, pos)
            nal = hvcc[pos + 2:pos + 2 + length]
            pos += 2 + length
            if nal_type == 33 and len(nal) == length > 2:
                return _hevc_sps(_rbsp(nal[2:]))
    raise Unsupported("no SPS in hvcC")


def _hevc_sps(rbsp: bytes) -> tuple[int, int, str]:
    b = _Bits(rbsp)
    b.u(4)  # sps_video_parameter_set_id
    sub_layers = b.u(3)  # sps_max_sub_layers_minus1
    b.u(1)
    _skip_hevc_profile_tier_level(b, sub_layers)
    b.ue()  # sps_seq_parameter_set_id
    chroma = b.ue()
    if chroma == 3 and b.u(1):
        raise Unsupported("separate colour planes")
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance_window_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        unit_x, unit_y = (2, 2) if chroma == 1 else (2, 1) if chroma == 2 else (1, 1)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    depth = b.ue() + 8
    if b.ue() + 8 != depth:
        raise Unsupported("luma and chroma bit depths differ")
    poc_lsb_bits = b.ue() + 4
    ordering_all = b.u(1)
    for _ in range(0 if ordering_all else sub_layers, sub_layers + 1):
        b.ue()
        b.ue()
        b.ue()
    for _ in range(6):  # coding and transform block sizes, transform hierarchy depths
        b.ue()
    if b.u(1) and b.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _skip_hevc_scaling_lists(b)
    b.u(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if b.u(1):  # pcm_enabled_flag
        b.u(8)
        b.ue()
        b.ue()
        b.u(1)
    _skip_hevc_short_term_ref_pic_sets(b, b.ue())
    if b.u(1):  # long_term_ref_pics_present_flag
        for _ in range(b.ue()):
            b.u(poc_lsb_bits)
            b.u(1)
    b.u(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    full_range, matrix = _vui_colour(b) if b.u(1) else (False, None)
    return width, height, _pix_fmt(chroma, depth, full_range, matrix, j444=False)


def _skip_hevc_profile_tier_level(b: _Bits, sub_layers: int) -> None:
    b.u(48)
    b.u(48)  # general profile, flags and constraints (88 bits) and level (8 bits)
    present = [(b.u(1), b.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        b.u(2 * (8 - sub_layers))
    for profile_present, level_present in present:
        if profile_present:
            b.u(48)
            b.u(40)
        if level_present:
            b.u(8)


def _skip_hevc_scaling_lists(b: _Bits) -> None:
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not b.u(1):  # scaling_list_pred_mode_flag
                b.ue()
                continue
            if size_id > 1:
                b.se()
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                b.se()


def _skip_hevc_short_term_ref_pic_sets(b: _Bits, count: int) -> None:
    delta_pocs: list[int] = []
    for idx in range(count):
        if idx and b.u(1):  # inter_ref_pic_set_prediction_flag
            b.u(1)  # delta_rps_sign
            b.ue()  # abs_delta_rps_minus1
            n = 0
            for _ in range(delta_pocs[idx - 1] + 1):
                used = b.u(1)
                if used or b.u(1):  # use_delta_flag (1 when absent)
                    n += 1
            delta_pocs.append(n)
        else:
            negative, positive = b.ue(), b.ue()
            for _ in range(negative + positive):
                b.ue()
                b.u(1)
            delta_pocs.append(negative + positive)
