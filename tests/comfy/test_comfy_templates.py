"""Workflow templates: built-ins, titles, mapping files, and the errors a user sees."""

from __future__ import annotations

import json

import pytest

from reelforge.errors import ConfigError
from reelforge.plugins.comfy_render import ComfyRenderer, VideoOptions
from reelforge.plugins.comfy_render.workflow import BUILTIN_TEMPLATES, builtin_path, load_template
from reelforge.plugins.image_gen.comfyui import ComfyImageGenerator, ImageOptions

from .custom_nodes import IPADAPTER_PLUS
from .fake_comfy import object_info


def _kind(name: str) -> str:
    return json.loads(builtin_path(name).read_text())["kind"]


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_templates_load_and_use_only_known_nodes(name):
    t = load_template(name, kind=_kind(name))
    # node classes of ComfyUI 0.3.64, and those of the custom node packs a template names
    assert t.class_types() <= set(object_info()) | set(t.custom_nodes)
    assert set(t.custom_nodes) <= set(IPADAPTER_PLUS)
    assert "filename_prefix" in t.targets and t.output in t.workflow


def test_wan_frames_are_4k_plus_1_and_titles_are_used():
    t = load_template("wan22-i2v", kind="video")
    assert t.frame_count(3.0, 24) == 73 and t.frame_count(5.0, 24) == 121
    assert t.targets["prompt"][0].node == "6" and t.targets["image"][0].node == "56"
    wf = t.render({"prompt": "waves", "seed": 7, "frames": 73, "fps": 24, "width": 832})
    assert wf["6"]["inputs"]["text"] == "waves" and wf["3"]["inputs"]["seed"] == 7
    assert wf["55"]["inputs"]["length"] == 73 and wf["57"]["inputs"]["fps"] == 24.0
    assert isinstance(wf["55"]["inputs"]["width"], int)
    assert t.workflow["6"]["inputs"]["text"] != "waves"  # the template itself is untouched


def test_seed_modulo_keeps_colour_in_range():
    t = load_template("image-basic", kind="image")
    assert t.render({"seed": 2**32 + 5})["1"]["inputs"]["color"] == (2**32 + 5) % 16777216


def test_bare_workflow_with_titles_and_a_mapping_file(tmp_path):
    wf = json.loads(builtin_path("video-basic").read_text())["workflow"]
    wf["1"]["_meta"] = {"title": "reelforge.image"}
    wf["2"]["_meta"] = {"title": "reelforge.frames"}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    t = load_template(str(path), kind="video")
    assert t.targets["image"][0].input == "image" and t.targets["frames"][0].input == "amount"
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"inject": {"fps": {"node": "3", "input": "fps"},
                                              "filename_prefix": [{"title": "Save", "input": "filename_prefix"}]},
                                   "output": "4"}))
    wf["4"]["_meta"] = {"title": "Save"}
    path.write_text(json.dumps(wf))
    t = load_template(str(path), kind="video", mapping=str(mapping))
    assert t.targets["fps"][0].node == "3" and t.targets["filename_prefix"][0].node == "4"
    assert t.output == "4"


@pytest.mark.parametrize("content, kind, message", [
    ("{not json", "video", "is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ("[1, 2]", "video", "expected a JSON object"),
    ('{"nodes": [], "links": []}', "video", "looks like a UI-format workflow"),
    ('{"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}', "video",
     "no injection point for image"),
    ('{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}}}', "image",
     "no injection point for prompt"),
    ('{"reelforge_template": 1, "kind": "image", "workflow": {"1": {"class_type": "X", "inputs": {}}}}',
     "video", "is a 'image' template"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {}}}, "inject": {"image": "9.image"}}',
     "video", "points at node '9', which is not in the workflow"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {}}}, "inject": {"image": "1.picture"}}',
     "video", "points at input 'picture' of node 1 (LoadImage), which has no such input"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": ["2", 0]}}}, "inject": {"image": "1.image"}}',
     "video", "is linked to node 2"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a"}}}, "inject": {"picture": "1.image"}}',
     "video", "'picture' is not an injection point"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a"}, "_meta": {"title": "reelforge.img"}}}}',
     "video", "'img' is not an injection point"),
    ('{"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a"}}}, "inject": {"image": "1.image"}, "output": "7"}',
     "video", "output node '7' is not in the workflow"),
])
def test_template_errors_are_config_errors_naming_the_problem(tmp_path, content, kind, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_template(str(path), kind=kind)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_template_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read ComfyUI template"):
        ComfyRenderer(VideoOptions(template=str(tmp_path / "nope.json")))


def test_backends_check_template_and_urls_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="is a 'video' template"):
        ComfyImageGenerator(ImageOptions(template="video-basic"))
    with pytest.raises(ConfigError, match="'localhost:8188' is not an http"):
        ComfyRenderer(VideoOptions(urls=("localhost:8188",)))
    with pytest.raises(ConfigError, match="no server URL"):
        ComfyRenderer(VideoOptions(urls=()))


def test_url_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("REELFORGE_COMFY_URL", "http://gpu1:8188, http://gpu2:8188")
    r = ComfyRenderer(VideoOptions())
    assert r.options.urls == ("http://gpu1:8188", "http://gpu2:8188") and r.concurrency == 4


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_templates_pass_the_fakes_validation(name, comfy):
    """Every input name and value of the shipped workflows is one ComfyUI 0.3.64 accepts
    (object_info_full.json), model file names aside."""
    wf = load_template(name, kind=_kind(name)).workflow
    comfy.extra_nodes = dict(IPADAPTER_PLUS)
    info = comfy.node_info()
    for node_id, node in wf.items():
        spec = info[node["class_type"]]["input"]
        allowed = {**spec.get("required", {}), **spec.get("optional", {})}
        assert set(node["inputs"]) <= set(allowed), (node_id, set(node["inputs"]) - set(allowed))
        assert set(spec.get("required", {})) <= set(node["inputs"]), node_id
    errors: dict = {}
    outputs = [n for n, node in wf.items() if info[node["class_type"]].get("output_node")]
    for out in outputs:
        comfy._validate(wf, out, errors, set())
    model_inputs = {"unet_name", "clip_name", "vae_name", "image", "ckpt_name"}  # files not on the fake
    assert all(e["extra_info"].get("input_name") in model_inputs for errs in errors.values() for e in errs)
