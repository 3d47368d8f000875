"""Small pieces of the client: output-name safety, error wording, event handling."""

from __future__ import annotations

import json

import pytest

from reelforge.plugins.comfy_render.client import (
    UnsafeOutputError,
    describe_node_errors,
    history_error,
    history_outputs,
    safe_output_name,
)

from .fake_comfy import TRANSCRIPTS


@pytest.mark.parametrize("filename, subfolder", [
    ("shot001_00001_.png", "story"), ("clip 1.mp4", ""), ("a..b.webm", "video/reelforge/s1"),
    ("x.png", "nested\\win"),
])
def test_plain_names_pass(filename, subfolder):
    assert safe_output_name(filename, subfolder) == filename


@pytest.mark.parametrize("filename, subfolder", [
    ("../x.png", ""), ("a/b.png", ""), ("a\\b.png", ""), ("/etc/passwd", ""), ("..", ""), (".", ""),
    ("", ""), ("c:x.png", ""), ("x.png\x00.txt", ""), (" x.png", ""), ("x.png", "../.."),
    ("x.png", "/abs"), ("x.png", "a/../../b"), ("x.png", "..\\.."), (None, ""), ("x.png", 3),
])
def test_escaping_names_are_refused(filename, subfolder):
    with pytest.raises(UnsafeOutputError):
        safe_output_name(filename, subfolder)


def test_node_errors_name_node_class_and_input():
    rec = json.loads((TRANSCRIPTS / "03_validation_errors.json").read_text())
    bodies = [e["response"]["json"] for e in rec["timeline"]
              if e.get("kind") == "http" and e["response"]["status"] == 400 and "json" in e["response"]]
    lines = [line for b in bodies for line in describe_node_errors(b["node_errors"])]
    assert "node 1 (EmptyImage) input 'width': Required input is missing" in lines
    assert "node 1 (EmptyImage) input 'width': Value 99999 bigger than max of 16384" in lines
    assert ("node 3 (ImageScale) input 'upscale_method': Value not in list (upscale_method: 'foo' "
            "not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'])") in lines
    assert "node 2 (SaveImage): Exception when validating node ('42')" in lines


def test_history_helpers_on_recorded_entries():
    rec = json.loads((TRANSCRIPTS / "02_image_to_video.json").read_text())
    entry = next(iter(rec["timeline"][60]["response"]["json"].values()))
    names = [(n, i["filename"]) for n, i in history_outputs(entry)]
    # output nodes ran in no fixed order (7 first here): names are read, never predicted
    assert sorted(names) == [("5", "shot001_00001_.webp"), ("6", "shot001_00002_.png"),
                             ("7", "shot001_00003_.webm")]
    failed = json.loads((TRANSCRIPTS / "04_execution_errors.json").read_text())["timeline"][22]
    kind, data = history_error(next(iter(failed["response"]["json"].values())))
    assert kind == "execution_error" and data["node_type"] == "SaveVideo"
