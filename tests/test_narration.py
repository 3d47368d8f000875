"""Narrators: the bundled eSpeak NG voice for real, and the piper backend's real loading and
synthesis code on a tiny voice model made here (the same two files a real Piper voice is)."""

from __future__ import annotations

import array
import json
import math
import threading
import wave

import pluggy
import pytest

from reelforge import hookspecs
from reelforge.errors import ConfigError, StageError
from reelforge.protocols import Narrator, ShotJob
from reelforge.records import Shot
from reelforge.plugins.narration import EspeakNarrator, EspeakOptions, PiperNarrator, PiperOptions
from reelforge.plugins.narration import text as T

LINE = "The lighthouse keeper climbs the spiral stairs as the storm rolls in from the sea."


def shot_with(narration: str, id: int = 1) -> Shot:
    return Shot(id=id, scene_id="s1", description="d", image_prompt="p", narration=narration)


def job_for(shot, tmp_path, cancelled=None) -> ShotJob:
    return ShotJob(session_id="s", stage="narration", shot=shot, attempt=1, work_dir=tmp_path / f"n{shot.id}",
                   checkpoint={}, cancelled=cancelled or threading.Event(), save=lambda d: None)


def wav_info(path):
    with wave.open(str(path), "rb") as w:
        data = array.array("h", w.readframes(w.getnframes()))
        return w.getnchannels(), w.getframerate(), len(data) / w.getframerate(), data


def loud(data) -> float:
    return math.sqrt(sum(x * x for x in data) / max(1, len(data))) / 32768


# -- registration -------------------------------------------------------------------

def test_narrators_register_through_their_hook():
    import importlib.metadata

    import reelforge.plugins.narration as narration_plugin

    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="reelforge")}
    assert installed["narration"] == "reelforge.plugins.narration"
    manager = pluggy.PluginManager("reelforge")
    manager.add_hookspecs(hookspecs)
    manager.register(narration_plugin, name="narration")
    found = []
    manager.hook.register_narrators(register=found.append)
    assert {cls.name for cls in found} == {"espeak", "piper"}
    for cls in found:
        assert hasattr(cls, "Options") and isinstance(cls.concurrency, int)
    assert isinstance(EspeakNarrator(), Narrator)


# -- espeak -------------------------------------------------------------------------

def test_espeak_speaks_a_line_into_a_mono_wav_under_work_dir(tmp_path):
    shot = shot_with(LINE, id=4)
    out = EspeakNarrator().narrate(shot, job_for(shot, tmp_path))
    assert out == tmp_path / "n4" / "shot_004.wav"
    assert not list(out.parent.glob("*partial*"))
    channels, rate, seconds, data = wav_info(out)
    assert (channels, rate) == (1, 22050)
    assert 3.0 < seconds < 9.0, "about a second per three words"
    assert loud(data) > 0.02
    again = EspeakNarrator().narrate(shot, job_for(shot, tmp_path / "again"))
    # eSpeak's pitch flutter runs on across calls (and across the tests run before this one
    # in the same process), so a second take differs by a few milliseconds.
    assert wav_info(again)[2] == pytest.approx(seconds, abs=0.05)


def test_espeak_rate_changes_the_length(tmp_path):
    shot = shot_with(LINE)
    slow = EspeakNarrator(EspeakOptions(rate=120)).narrate(shot, job_for(shot, tmp_path / "slow"))
    fast = EspeakNarrator(EspeakOptions(rate=300)).narrate(shot, job_for(shot, tmp_path / "fast"))
    assert wav_info(slow)[2] > 1.8 * wav_info(fast)[2]


@pytest.mark.parametrize("line, voice", [
    ("Le gardien du phare se lie d'amitié avec la tempête qui arrive de la mer.", "fr"),
    ("Der Leuchtturmwärter und der Sturm sind nicht mehr allein in der Nacht.", "de"),
    ("El guardián del faro se hace amigo de la tormenta que llega por el mar.", "es"),
    ("Смотритель маяка подружился с бурей.", "ru"),
    ("灯塔看守人和暴风雨成了朋友。", "cmn"),
    ("灯台守は嵐と友達になる。", "ja"),
    (LINE, "en-us"),
])
def test_auto_voice_follows_the_language_of_the_line(tmp_path, line, voice):
    narrator = EspeakNarrator()
    shot = shot_with(line)
    assert narrator.voice_for(shot, line) == voice
    channels, rate, seconds, data = wav_info(narrator.narrate(shot, job_for(shot, tmp_path)))
    assert seconds >= T.min_seconds(line) and loud(data) > 0.02


@pytest.mark.parametrize("line", ["", "   ", "... !!!"])
def test_empty_narration_is_a_clear_error(tmp_path, line):
    shot = shot_with(line, id=3)
    with pytest.raises(StageError, match="shot 3: its narration line is empty"):
        EspeakNarrator().narrate(shot, job_for(shot, tmp_path))
    assert not (tmp_path / "n3").exists() or not list((tmp_path / "n3").iterdir())


def test_a_voice_that_cannot_read_the_script_is_refused_not_mumbled(tmp_path):
    # eSpeak's English voice "reads" Cyrillic by spelling out letter names: 7 s of nonsense.
    shot = shot_with("Смотритель маяка подружился с бурей.", id=2)
    with pytest.raises(StageError, match=r"shot 2: .*Cyrillic script.*'en-us'.*'ru'"):
        EspeakNarrator(EspeakOptions(voice="en-us")).narrate(shot, job_for(shot, tmp_path))
    shot = shot_with("灯塔看守人和暴风雨成了朋友。", id=5)
    with pytest.raises(StageError, match="Han script"):
        EspeakNarrator(EspeakOptions(voice="fr")).narrate(shot, job_for(shot, tmp_path))


def test_an_unknown_voice_fails_before_anything_runs():
    with pytest.raises(ConfigError, match=r"no voice 'klingon'.*languages, e\.g\."):
        EspeakNarrator(EspeakOptions(voice="klingon"))
    with pytest.raises(ConfigError, match="close: en"):
        EspeakNarrator(EspeakOptions(voice="en-xx"))
    EspeakNarrator(EspeakOptions(voice="en-gb+f3"))  # a language with a variant is fine


def test_cancelled_narration_writes_nothing(tmp_path):
    cancelled = threading.Event()
    cancelled.set()
    shot = shot_with(LINE)
    with pytest.raises(StageError, match="cancelled"):
        EspeakNarrator().narrate(shot, job_for(shot, tmp_path, cancelled))
    assert not list((tmp_path / "n1").glob("*.wav"))


def test_implausibly_short_audio_is_refused():
    shot = shot_with(LINE, id=6)
    T.check_length(shot, LINE, 4.5, "espeak", "en-us")
    with pytest.raises(StageError, match=r"shot 6: the espeak voice 'en-us' gave 1\.00 s of audio"):
        T.check_length(shot, LINE, 1.0, "espeak", "en-us")
    # Syllabic scripts say more per character.
    assert T.min_seconds("灯塔看守人和暴风雨成了朋友") > T.min_seconds("lighthouse keeper")


@pytest.mark.parametrize("text, language, sure", [
    ("The keeper and the storm are friends at last.", "en", True),
    ("La tempête et le gardien sont amis.", "fr", True),
    ("Ο φύλακας του φάρου", "el", True),
    ("Доглядач маяка і буря", "uk", True),
    ("등대지기와 폭풍", "ko", True),
    ("Xyzzy plugh", "en", False),
])
def test_guess_language(text, language, sure):
    assert T.guess_language(text) == (language, sure)


# -- piper ----------------------------------------------------------------------------

@pytest.fixture
def tiny_voice(tmp_path):
    """A real Piper voice in miniature: an ONNX model with Piper's inputs (phoneme ids,
    lengths, scales) that outputs ``hop`` samples of a tone per phoneme id, and a config
    with Piper's own phoneme map, so piper's loading, phonemizing and synthesis all run."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("piper")
    from onnx import TensorProto, helper
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    def make(name: str, hop: int, language: str = "en-us"):
        nodes = [
            helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["ids_f", "axes"], ["ids3"]),
            helper.make_node("Tile", ["ids3", "repeats"], ["tiled"]),
            helper.make_node("Mul", ["tiled", "freq"], ["phase"]),
            helper.make_node("Sin", ["phase"], ["wave"]),
            helper.make_node("Mul", ["wave", "half"], ["output"]),
        ]
        graph = helper.make_graph(
            nodes, "tiny_piper",
            [helper.make_tensor_value_info("input", TensorProto.INT64, [1, None]),
             helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
             helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, None])],
            initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
                         helper.make_tensor("repeats", TensorProto.INT64, [3], [1, 1, hop]),
                         helper.make_tensor("freq", TensorProto.FLOAT, [], [0.7]),
                         helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        config = {"audio": {"sample_rate": 16000}, "espeak": {"voice": language}, "num_symbols": 256,
                  "num_speakers": 1, "phoneme_type": "espeak", "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
                  "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8}}
        (tmp_path / f"{name}.onnx.json").write_text(json.dumps(config))
        return path

    return make


def test_piper_speaks_with_a_local_voice_file(tmp_path, tiny_voice):
    model = tiny_voice("tiny", hop=1024)
    shot = shot_with(LINE, id=2)
    narrator = PiperNarrator(PiperOptions(model=str(model)))
    out = narrator.narrate(shot, job_for(shot, tmp_path))
    channels, rate, seconds, data = wav_info(out)
    assert out.name == "shot_002.wav" and (channels, rate) == (1, 16000)
    # One hop of samples per phoneme id: the length follows the phonemes of the line.
    assert seconds > T.min_seconds(LINE) and loud(data) > 0.1
    short = shot_with("The keeper.", id=3)
    assert wav_info(narrator.narrate(short, job_for(short, tmp_path)))[2] < seconds / 3


def test_piper_too_short_audio_is_an_error_not_a_silent_second(tmp_path, tiny_voice):
    model = tiny_voice("mumbler", hop=16)  # a voice that gives almost nothing for a long line
    shot = shot_with(LINE, id=7)
    with pytest.raises(StageError, match=r"shot 7: the piper voice 'mumbler' gave 0\.\d\d s"):
        PiperNarrator(PiperOptions(model=str(model))).narrate(shot, job_for(shot, tmp_path))


def test_piper_voice_of_another_script_is_refused(tmp_path, tiny_voice):
    model = tiny_voice("russian", hop=1024, language="ru")
    shot = shot_with(LINE)
    with pytest.raises(StageError, match=r"Latin script but the piper voice 'ru' reads Cyrillic"):
        PiperNarrator(PiperOptions(model=str(model))).narrate(shot, job_for(shot, tmp_path))


def test_piper_missing_model_names_the_path_and_how_to_get_one(tmp_path):
    with pytest.raises(ConfigError, match="needs a voice model: download a voice"):
        PiperNarrator()
    missing = tmp_path / "voices" / "en_US-lessac-medium.onnx"
    with pytest.raises(ConfigError, match=rf"{missing} does not exist; download a voice .*piper-voices"):
        PiperNarrator(PiperOptions(model=str(missing)))
    missing.parent.mkdir()
    missing.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"en_US-lessac-medium\.onnx\.json does not exist"):
        PiperNarrator(PiperOptions(model=str(missing)))
    (tmp_path / "voices" / "en_US-lessac-medium.onnx.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a Piper voice config"):
        PiperNarrator(PiperOptions(model=str(missing)))


def test_piper_chinese_voice_without_its_phonemizer_model_is_refused_not_downloaded(tmp_path):
    model = tmp_path / "zh_CN-voice.onnx"
    model.write_bytes(b"x")
    (tmp_path / "zh_CN-voice.onnx.json").write_text(json.dumps(
        {"audio": {"sample_rate": 22050}, "espeak": {"voice": "cmn"}, "phoneme_type": "pinyin"}))
    with pytest.raises(ConfigError, match=r"needs the g2pW model at .*g2pw\.onnx; reelforge never downloads"):
        PiperNarrator(PiperOptions(model=str(model)))


def test_piper_damaged_model_is_a_clear_error(tmp_path, tiny_voice):
    model = tiny_voice("broken", hop=1024)
    model.write_bytes(b"garbage, not protobuf")
    shot = shot_with(LINE)
    with pytest.raises(StageError, match=r"could not load the piper voice .*broken\.onnx"):
        PiperNarrator(PiperOptions(model=str(model))).narrate(shot, job_for(shot, tmp_path))


def test_piper_without_piper_installed_fails_before_anything_runs(tmp_path, monkeypatch, tiny_voice):
    import importlib.util

    model = tiny_voice("tiny", hop=1024)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'reelforge\[piper\]'"):
        PiperNarrator(PiperOptions(model=str(model)))
