"""reelforge.media.mp4info reads clips' stream facts in-process; they must agree with ffmpeg's
probe() on real clips (kenburns, the fake ComfyUI, libx264/libx265 in several formats), and
assemble() must use them instead of an ffmpeg process per clip."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from reelforge.media import ffmpeg

from reelforge.media import mp4info
from reelforge.errors import StageError
from reelforge.media.ffmpeg import assemble, clip_facts, probe, run_ffmpeg
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.plugins.kenburns import KenBurnsOptions, KenBurnsRenderer

from comfy.fake_comfy import media  # tests/ is on sys.path; tests/comfy is a package


def make_clip(path: Path, *args: str, src: str = "testsrc2=s=64x36:d=0.4:r=10") -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", src, *args, "-y", str(path)], what=f"making {path.name}")
    return path


def assert_agrees_with_probe(path: Path) -> dict:
    mine, theirs = mp4info.read_facts(path), probe(path)
    # probe() has the duration to the hundredth ("Duration: 00:00:00.42"); the rest is exact
    assert mine["duration"] == pytest.approx(theirs["duration"], abs=0.0051)
    assert {k: v for k, v in mine.items() if k != "duration"} == \
        {k: v for k, v in theirs.items() if k != "duration"}
    return mine


X264 = ["-c:v", "libx264", "-preset", "ultrafast"]
X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"]

VARIANTS = {
    "h264 yuv420p 10 fps": (X264 + ["-pix_fmt", "yuv420p"], "testsrc2=s=64x36:d=0.4:r=10"),
    "h264 yuv444p 29.97 fps, cropped 66x38": (X264 + ["-pix_fmt", "yuv444p"], "testsrc2=s=66x38:d=0.5:r=30000/1001"),
    "h264 yuv422p 23.976 fps": (X264 + ["-pix_fmt", "yuv422p"], "testsrc2=s=96x54:d=0.5:r=24000/1001"),
    "h264 full range yuvj420p": (X264 + ["-pix_fmt", "yuv420p", "-color_range", "pc"], "testsrc2=s=64x36:d=0.3:r=25"),
    "h264 full range yuvj444p": (X264 + ["-pix_fmt", "yuv444p", "-color_range", "pc"], "testsrc2=s=64x36:d=0.3:r=25"),
    "h264 yuv420p10le, colour description": (
        X264 + ["-pix_fmt", "yuv420p10le", "-colorspace", "bt709", "-color_primaries", "bt709",
                "-color_trc", "bt709"], "testsrc2=s=64x36:d=0.3:r=50"),
    "h264 yuv422p10le 60 fps": (X264 + ["-pix_fmt", "yuv422p10le"], "testsrc2=s=64x36:d=0.3:r=60"),
    "h264 baseline, B-frames off": (X264 + ["-profile:v", "baseline", "-pix_fmt", "yuv420p"], "testsrc2=s=64x36:d=0.4:r=12"),
    "h264 scaling matrices (cqm=jvt)": (X264 + ["-pix_fmt", "yuv420p", "-x264-params", "cqm=jvt"], "testsrc2=s=64x36:d=0.4:r=12"),
    "h264 with audio": (X264 + ["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"], "testsrc2=s=64x36:d=0.4:r=24"),
    "h264 avc3 sample entry": (X264 + ["-pix_fmt", "yuv420p", "-tag:v", "avc3"], "testsrc2=s=64x36:d=0.4:r=10"),
    "hevc hev1 yuv420p 24 fps": (X265 + ["-pix_fmt", "yuv420p"], "testsrc2=s=64x36:d=0.4:r=24"),
    "hevc hvc1 full range yuvj420p": (X265 + ["-pix_fmt", "yuv420p", "-color_range", "pc", "-tag:v", "hvc1"],
                                      "testsrc2=s=64x36:d=0.4:r=24"),
    "hevc yuv420p10le 29.97 fps, cropped 66x38": (X265 + ["-pix_fmt", "yuv420p10le"], "testsrc2=s=66x38:d=0.4:r=30000/1001"),
    "hevc yuv444p full range (stays yuv444p)": (X265 + ["-pix_fmt", "yuv444p", "-color_range", "pc"],
                                                "testsrc2=s=64x36:d=0.4:r=15"),
    "hevc yuv422p10le": (X265 + ["-pix_fmt", "yuv422p10le"], "testsrc2=s=64x36:d=0.4:r=15"),
    "hevc many reference picture sets (8 B-frames, 5 refs)": (
        ["-c:v", "libx265", "-preset", "slow", "-x265-params", "log-level=error:bframes=8:ref=5"],
        "testsrc2=s=128x72:d=1:r=25"),
    "hevc 3 temporal sub-layers": (X265[:-1] + ["log-level=error:temporal-layers=3:b-pyramid=1:bframes=4"],
                                   "testsrc2=s=128x72:d=0.6:r=25"),
    "hevc scaling lists, SAR 4:3, colour description": (
        X265[:-1] + ["log-level=error:scaling-list=default:sar=4\\:3:colorprim=bt709:transfer=bt709:colormatrix=bt709"],
        "testsrc2=s=128x72:d=0.4:r=25"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_facts_agree_with_probe(tmp_path, name):
    args, src = VARIANTS[name]
    if "with audio" in name:
        run_ffmpeg(["-f", "lavfi", "-i", src, "-f", "lavfi", "-i", "sine=d=0.4", *args, "-y",
                    str(tmp_path / "clip.mp4")], what="making a clip with audio")
        path = tmp_path / "clip.mp4"
    else:
        path = make_clip(tmp_path / "clip.mp4", *args, src=src)
    facts = assert_agrees_with_probe(path)
    assert facts["codec"] in ("h264", "hevc") and facts["width"] and facts["fps"]


def test_moov_after_a_large_mdat_is_found(tmp_path):
    path = make_clip(tmp_path / "big.mp4", *X264, "-crf", "0", "-pix_fmt", "yuv420p",
                     src="testsrc2=s=320x240:d=1:r=25")
    data = path.read_bytes()
    assert len(data) > 3 * 64 * 1024 and data.index(b"moov") > data.index(b"mdat")  # no +faststart
    assert assert_agrees_with_probe(path)["duration"] == pytest.approx(1.0)
    faststart = make_clip(tmp_path / "fast.mp4", *X264, "-crf", "0", "-movflags", "+faststart",
                          src="testsrc2=s=320x240:d=1:r=25")
    assert faststart.read_bytes().index(b"moov") < faststart.read_bytes().index(b"mdat")
    assert mp4info.read_facts(faststart) == mp4info.read_facts(path)


@pytest.fixture
def still(tmp_path):
    path = tmp_path / "still.png"
    Image.linear_gradient("L").resize((640, 360)).convert("RGB").save(path)
    return path


@pytest.mark.parametrize("options", [KenBurnsOptions(width=320, height=180, fps=25),
                                     KenBurnsOptions(width=256, height=144, fps=10),
                                     KenBurnsOptions(width=322, height=182, fps=24)])
def test_kenburns_clips(tmp_path, still, options):
    shot = Shot(id=1, scene_id="s1", description="d", image_prompt="p", motion_prompt="slow push in",
                duration_s=0.8, seed=1)
    job = ShotJob(session_id="s", stage="videos", shot=shot, attempt=1, work_dir=tmp_path / "w",
                  checkpoint={}, cancelled=threading.Event(), save=lambda d: None)
    clip = KenBurnsRenderer(options).render(shot, still, job)
    facts = assert_agrees_with_probe(clip)
    assert (facts["width"], facts["height"], facts["fps"]) == (options.width - options.width % 2,
                                                                options.height - options.height % 2, options.fps)


def test_fake_comfyui_clips(tmp_path):
    mp4 = tmp_path / "comfy.mp4"
    mp4.write_bytes(media("mp4"))
    assert assert_agrees_with_probe(mp4)["codec"] == "h264"
    webm = tmp_path / "comfy.webm"
    webm.write_bytes(media("webm"))
    with pytest.raises(mp4info.Unsupported, match="not an MP4"):
        mp4info.read_facts(webm)
    assert clip_facts(webm) == probe(webm)  # WebM: ffmpeg is asked


@pytest.mark.parametrize("args, why", [
    (["-c:v", "mpeg4"], "sample entry b'mp4v'"),
    (X264 + ["-pix_fmt", "gray"], "chroma format 0"),
    (X264 + ["-pix_fmt", "yuv420p", "-flags", "+ildct+ilme", "-x264-params", "interlaced=1"], "interlaced"),
    (X264 + ["-pix_fmt", "yuv444p", "-colorspace", "rgb"], "RGB"),
    (X264 + ["-movflags", "frag_keyframe+empty_moov"], "fragmented"),
])
def test_what_the_reader_cannot_tell_goes_to_probe(tmp_path, args, why):
    path = make_clip(tmp_path / "odd.mp4", *args)
    with pytest.raises(mp4info.Unsupported, match=why):
        mp4info.read_facts(path)
    assert clip_facts(path) == probe(path)


def test_broken_files_are_unsupported_not_a_crash(tmp_path):
    good = make_clip(tmp_path / "good.mp4", *X264, "-movflags", "+faststart").read_bytes()
    cases = {"empty": b"", "junk": b"\x00\x01garbage" * 50, "cut in moov": good[:good.index(b"moov") + 100],
             "no moov": good[:good.index(b"moov") - 4], "bad size": good[:4] + b"ftyp" + b"\xff" * 40}
    for name, data in cases.items():
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(data)
        with pytest.raises(mp4info.Unsupported):
            mp4info.read_facts(path)
        with pytest.raises(StageError):
            clip_facts(path)  # probe() decides, and it cannot read them either
    with pytest.raises(StageError, match="does not exist"):
        clip_facts(tmp_path / "missing.mp4")


# -- parameter sets no available encoder writes ---------------------------------------
# x264 never writes pic_order_cnt_type 1, and neither x265 nor kvazaar puts short-term
# reference picture sets in the SPS; these bitstreams are written by hand, field by field
# after H.264 7.3.2.1.1 and H.265 7.3.2.2, so a misread field shifts what follows.

class BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> "BitWriter":
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> "BitWriter":
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> "BitWriter":
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp_trailing_bits
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def h264_sps(full_range: int) -> bytes:
    w = BitWriter().u(8, 100).u(8, 0).u(8, 30).ue(0)  # High profile, level 3, sps id 0
    w.ue(1).ue(0).ue(0).u(1, 0)  # 4:2:0, 8 bits, no transform bypass
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    w.u(1, 1).se(3).se(-11)  # list 0: next scale 11, then 0, which ends the list early
    w.u(1, 1)
    for _ in range(16):  # list 1: every delta read
        w.se(1)
    for _ in range(6):
        w.u(1, 0)
    w.ue(0).ue(1)  # log2_max_frame_num_minus4, pic_order_cnt_type 1
    w.u(1, 0).se(-2).se(5).ue(2).se(1).se(-3)
    w.ue(4).u(1, 0).ue(11).ue(7).u(1, 1).u(1, 1)  # 4 refs, 192 x 128, frame_mbs_only
    w.u(1, 1).ue(0).ue(0).ue(0).ue(4)  # crop 2 x 4 rows at the bottom: 192 x 120
    w.u(1, 1)  # vui_parameters_present_flag
    w.u(1, 1).u(8, 1)  # aspect_ratio_idc 1 (square)
    w.u(1, 0)  # no overscan info
    w.u(1, 1).u(3, 5).u(1, full_range).u(1, 0)
    return b"\x67" + w.rbsp()


def hevc_sps(full_range: int) -> bytes:
    w = BitWriter().u(4, 0).u(3, 1).u(1, 1)  # vps id, one sub-layer besides the base, nesting
    w.u(48, 0x01_6000_0000_00).u(48, 0x0000_0000_005D)  # general profile_tier_level
    w.u(1, 1).u(1, 1).u(14, 0)  # sub-layer 1 has profile and level; reserved bits to 8 layers
    w.u(48, 0x12345).u(40, 0xABCDEF).u(8, 90)
    w.ue(0).ue(1).ue(200).ue(120)  # sps id, 4:2:0, 200 x 120 luma samples
    w.u(1, 1).ue(0).ue(4).ue(0).ue(2)  # conformance window: 192 x 116
    w.ue(0).ue(0).ue(4)  # 8 bits, log2_max_pic_order_cnt_lsb 8
    w.u(1, 1)
    for _ in range(2):  # ordering info for both sub-layers
        w.ue(4).ue(2).ue(0)
    for value in (0, 3, 0, 3, 1, 1):
        w.ue(value)
    w.u(1, 1).u(1, 1)  # scaling lists, with data
    for size_id in range(4):
        for matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if matrix_id % 2:
                w.u(1, 0).ue(1)  # predicted from another matrix
            else:
                w.u(1, 1)
                if size_id > 1:
                    w.se(4)
                for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                    w.se(-1)
    w.u(1, 0).u(1, 1)  # amp, sao
    w.u(1, 1).u(4, 7).u(4, 7).ue(0).ue(1).u(1, 0)  # pcm
    w.ue(3)  # three short-term reference picture sets
    w.ue(2).ue(1)  # set 0: 2 negative, 1 positive pictures
    for delta, used in ((0, 1), (1, 1), (0, 0)):
        w.ue(delta).u(1, used)
    w.u(1, 1).u(1, 0).ue(0)  # set 1 predicted from set 0: 3 + 1 flags
    w.u(1, 1).u(1, 0).u(1, 1).u(1, 0).u(1, 0).u(1, 1)  # used; delta; neither; used -> 3 pictures
    w.u(1, 1).u(1, 1).ue(1)  # set 2 predicted from set 1: 3 + 1 pairs of flags
    for _ in range(4):
        w.u(1, 0).u(1, 0)
    w.u(1, 1).ue(2).u(8, 17).u(1, 1).u(8, 200).u(1, 0)  # two long-term pictures, 8-bit POCs
    w.u(1, 1).u(1, 1)  # temporal mvp, strong intra smoothing
    w.u(1, 1)  # vui_parameters_present_flag
    w.u(1, 1).u(8, 255).u(16, 4).u(16, 3)  # SAR 4:3
    w.u(1, 1).u(1, 0)  # overscan
    w.u(1, 1).u(3, 5).u(1, full_range).u(1, 1).u(8, 1).u(8, 1).u(8, 1)
    return w.rbsp()


@pytest.mark.parametrize("full_range, pix_fmt", [(0, "yuv420p"), (1, "yuvj420p")])
def test_hand_written_parameter_sets(full_range, pix_fmt):
    sps = h264_sps(full_range)
    avcc = bytes([1, 100, 0, 30, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps + b"\x00"
    assert mp4info._h264_config(avcc) == (192, 120, pix_fmt)
    assert mp4info._hevc_sps(hevc_sps(full_range)) == (192, 116, pix_fmt)
    with pytest.raises(mp4info.Unsupported, match="ends early"):
        mp4info._hevc_sps(hevc_sps(full_range)[:-6])


# -- assemble -----------------------------------------------------------------------

@pytest.fixture
def no_probe(monkeypatch):
    def refuse(path):
        raise AssertionError(f"probe({path}) called")

    monkeypatch.setattr(ffmpeg, "probe", refuse)


def clips_of(tmp_path: Path, n: int, *args: str, prefix: str = "c") -> list[Path]:
    first = make_clip(tmp_path / f"{prefix}0.mp4", *X264, *args)
    out = [first]
    for i in range(1, n):
        out.append(tmp_path / f"{prefix}{i}.mp4")
        out[-1].write_bytes(first.read_bytes())
    return out


def test_assemble_of_mp4_clips_probes_none_and_copies_streams(tmp_path, no_probe):
    clips = clips_of(tmp_path, 5, "-pix_fmt", "yuv444p")
    film = assemble(clips, tmp_path / "film.mp4")
    info = mp4info.read_facts(film)
    assert info["pix_fmt"] == "yuv444p"  # a re-encode would have made yuv420p
    assert info["duration"] == pytest.approx(5 * 0.4, abs=0.02)


def test_assemble_reencodes_when_facts_differ(tmp_path, no_probe):
    clips = clips_of(tmp_path, 2, "-pix_fmt", "yuv444p") + clips_of(tmp_path, 1, "-pix_fmt", "yuv420p", prefix="d")
    film = assemble(clips, tmp_path / "film.mp4")
    info = mp4info.read_facts(film)
    assert info["pix_fmt"] == "yuv420p" and info["duration"] == pytest.approx(1.2, abs=0.05)


def test_assemble_uses_recorded_facts_and_reads_the_missing(tmp_path, monkeypatch):
    clips = clips_of(tmp_path, 3, "-pix_fmt", "yuv444p")
    read = []
    real = ffmpeg.clip_facts
    monkeypatch.setattr(ffmpeg, "clip_facts", lambda p: read.append(Path(p).name) or real(p))
    recorded = real(clips[0])
    # recorded facts that say the middle clip differs: assemble believes them and re-encodes
    film = assemble(clips, tmp_path / "film.mp4", facts=[recorded, {**recorded, "fps": 12.0}, None])
    assert read == ["c2.mp4", "film.mp4"]  # the missing fact, then the film, verified
    assert mp4info.read_facts(film)["pix_fmt"] == "yuv420p"
    film = assemble(clips, tmp_path / "film2.mp4", facts=[recorded] * 3)
    assert read == ["c2.mp4", "film.mp4", "film2.mp4"] and mp4info.read_facts(film)["pix_fmt"] == "yuv444p"
    with pytest.raises(StageError, match="2 facts for 3 clips"):
        assemble(clips, tmp_path / "film3.mp4", facts=[recorded] * 2)


def test_assemble_mixes_in_process_facts_with_probed_webm(tmp_path):
    mp4 = make_clip(tmp_path / "a.mp4", *X264, "-pix_fmt", "yuv420p", src="testsrc2=s=64x36:d=0.4:r=10")
    webm = make_clip(tmp_path / "b.webm", "-c:v", "libvpx-vp9", "-deadline", "realtime",
                     src="testsrc2=s=64x36:d=0.4:r=10")
    film = assemble([mp4, webm], tmp_path / "film.mp4")
    info = mp4info.read_facts(film)
    assert (info["codec"], info["width"], info["height"]) == ("h264", 64, 36)
    assert info["duration"] == pytest.approx(0.8, abs=0.05)
