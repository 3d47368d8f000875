"""Reference images (characters' portraits) in ComfyUI workflows: slots declared in a
template, pruned when a shot has fewer references, uploaded once per server (across a
SIGKILLed `reelforge run`, a new process and a second server), and the pre-flight refusal of a
template whose custom nodes the server lacks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from reelforge.errors import ConfigError, ServiceError, StageError
from reelforge.plugins.comfy_render.references import reference_name
from reelforge.plugins.comfy_render.workflow import load_template
from reelforge.plugins.image_gen.comfyui import ComfyImageGenerator, ImageOptions
from reelforge.protocols import Reference
from reelforge.records import Shot

from .custom_nodes import IPADAPTER_PLUS

ROOT = Path(__file__).resolve().parents[2]

#: Weightless: two portraits stitched beside a flat colour, so it runs on the fake.
STITCH = {
    "reelforge_template": 1, "kind": "image",
    "workflow": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "reelforge.reference_1"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "reelforge.reference_2"}},
        "4": {"class_type": "ImageStitch", "inputs": {"image1": ["1", 0], "image2": ["2", 0], "direction": "right",
                                                      "match_image_size": True, "spacing_width": 0,
                                                      "spacing_color": "white"}},
        "5": {"class_type": "ImageStitch", "inputs": {"image1": ["4", 0], "image2": ["3", 0], "direction": "right",
                                                      "match_image_size": True, "spacing_width": 0,
                                                      "spacing_color": "white"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "reelforge/shot"}},
    },
    "inject": {"seed": "1.color", "filename_prefix": "6.filename_prefix"},
    "seed_modulo": 16777216, "optional": ["prompt"], "output": "6",
}


def write_template(tmp_path: Path, data: dict, name: str = "refs.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def portrait(tmp_path: Path, name: str, colour: tuple[int, int, int]) -> Reference:
    path = tmp_path / "session" / "cast" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 40), colour).save(path)
    return Reference(name=name, path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def gen(url: str, template: str) -> ComfyImageGenerator:
    return ComfyImageGenerator(ImageOptions(urls=(url,), template=template, poll_interval_s=0.05,
                                            server_grace_s=120.0))


def uploads(fake) -> int:
    return sum(1 for method, path, _ in fake.requests if (method, path) == ("POST", "/upload/image"))


def make_shot(i: int) -> Shot:
    return Shot(id=i, scene_id="s1", description="two friends on a pier", image_prompt="two friends on a pier",
                motion_prompt="", duration_s=2.0, seed=100 + i)


# -- declaring and pruning -----------------------------------------------------------------

def test_slots_by_title_by_inject_and_by_list(tmp_path):
    t = load_template(write_template(tmp_path, STITCH), kind="image")
    assert t.reference_slots == 2 and t.min_references == 0
    assert [(x.node, x.input) for x in t.targets["reference_2"]] == [("3", "image")]
    listed = {**STITCH, "workflow": {k: {kk: vv for kk, vv in v.items() if kk != "_meta"}
                                     for k, v in STITCH["workflow"].items()},
              "inject": {**STITCH["inject"], "references": ["2.image", {"node": "3", "input": "image"}]}}
    assert load_template(write_template(tmp_path, listed, "l.json"), kind="image").reference_slots == 2
    assert not ComfyImageGenerator(ImageOptions(template="image-basic")).takes_references
    assert ComfyImageGenerator(ImageOptions(template=write_template(tmp_path, STITCH))).takes_references


@pytest.mark.parametrize("change, message", [
    ({"inject": {"reference_2": "3.image"}, "title2": ""}, None),
    ({"title2": "reelforge.reference_3"}, "without a gap (has reference_1, reference_3)"),
    ({"title2": "reelforge.reference_1"}, None),
    ({"bypass": {"5": "nope"}}, "bypass: node 5 has no linked input 'nope'"),
    ({"inject": {"reference_99": "3.image"}}, "'reference_99' is not an injection point"),
])
def test_reference_declaration_errors(tmp_path, change, message):
    data = json.loads(json.dumps(STITCH))
    if "title2" in change:
        data["workflow"]["3"]["_meta"] = {"title": change["title2"]}
    data["inject"].update(change.get("inject", {}))
    if "bypass" in change:
        data["bypass"] = change["bypass"]
    path = write_template(tmp_path, data)
    if message is None and change.get("title2") == "reelforge.reference_1":
        # two nodes for one slot: one value, two places (as any key may)
        assert load_template(path, kind="image").reference_slots == 1
        return
    if message is None:
        assert load_template(path, kind="image").reference_slots == 2
        return
    with pytest.raises(ConfigError) as info:
        load_template(path, kind="image")
    assert message in str(info.value)


def test_empty_slots_are_pruned_in_the_shipped_templates():
    ipa = load_template("sdxl-ipadapter", kind="image")
    assert ipa.reference_slots == 2 and ipa.min_references == 0
    one = ipa.render({"reference_1": "reelforge/a.png"})
    assert "11" not in one and "4" not in one  # the second portrait and its IPAdapterAdvanced
    assert one["8"]["inputs"]["model"] == ["3", 0] and one["10"]["inputs"]["image"] == "reelforge/a.png"
    none = ipa.render({})
    assert {"3", "4", "10", "11"}.isdisjoint(none) and none["8"]["inputs"]["model"] == ["2", 0]
    both = ipa.render({"reference_1": "a.png", "reference_2": "b.png"})
    assert both["8"]["inputs"]["model"] == ["4", 0] and both["11"]["inputs"]["image"] == "b.png"

    edit = load_template("qwen-image-edit", kind="image")
    assert edit.reference_slots == 3 and edit.min_references == 0
    two = edit.render({"reference_1": "a.png", "reference_2": "b.png", "prompt": "on the pier"})
    assert "12" not in two
    for encoder in ("6", "7"):  # positive and negative both see the portraits
        links = {k: v for k, v in two[encoder]["inputs"].items() if k.startswith("image")}
        assert links == {"image1": ["10", 0], "image2": ["11", 0]}
    assert two["6"]["inputs"]["prompt"] == "on the pier"
    assert not any(k.startswith("image") for k in edit.render({})["6"]["inputs"])


def test_a_template_that_needs_a_reference_refuses_a_shot_without_one(tmp_path, comfy, jobs):
    data = json.loads(json.dumps(STITCH))
    data["workflow"]["6"]["inputs"]["images"] = ["2", 0]  # the portrait is the picture
    g = gen(comfy.url, write_template(tmp_path, data))
    assert g.backend.template.min_references == 1
    with pytest.raises(StageError, match="needs at least 1 reference image"):
        g.generate(make_shot(1), jobs(make_shot(1), stage="images"))
    assert comfy.posts() == []


# -- uploading once per server -------------------------------------------------------------

def test_each_reference_is_uploaded_once_per_server(tmp_path, make_comfy, jobs):
    a, b = make_comfy(), make_comfy()
    template = write_template(tmp_path, STITCH)
    alice, bob = portrait(tmp_path, "alice", (200, 40, 40)), portrait(tmp_path, "bob", (40, 40, 200))
    g = gen(a.url, template)
    for i, refs in ((1, (alice, bob)), (2, (alice,)), (3, (bob, alice))):
        job = jobs(make_shot(i), stage="images")
        job.references = refs
        assert g.generate(make_shot(i), job).is_file()
    assert uploads(a) == 2  # alice and bob, once each, for three shots
    names = {r.name: f"reelforge/{reference_name(r)}" for r in (alice, bob)}
    first, second, third = (body["prompt"] for body in a.posts())
    assert (first["2"]["inputs"]["image"], first["3"]["inputs"]["image"]) == (names["alice"], names["bob"])
    assert second["2"]["inputs"]["image"] == names["alice"] and "3" not in second
    assert third["2"]["inputs"]["image"] == names["bob"]
    for r in (alice, bob):  # on the server under the content name, byte for byte
        assert (a.input_dir / names[r.name]).read_bytes() == r.path.read_bytes()
    g.close()

    # another process (nothing remembered): the server is asked, and nothing is sent again
    g2 = gen(a.url, template)
    job = jobs(make_shot(4), stage="images")
    job.references = (alice,)
    g2.generate(make_shot(4), job)
    assert uploads(a) == 2
    asked = [p for m, p, _ in a.requests if p == "/view"]
    assert asked  # GET /view?type=input answered 200 with the same bytes
    g2.close()

    # a second server gets it once
    g3 = gen(b.url, template)
    for i in (5, 6):
        job = jobs(make_shot(i), stage="images")
        job.references = (alice,)
        g3.generate(make_shot(i), job)
    assert uploads(b) == 1 and uploads(a) == 2
    g3.close()


def test_a_damaged_copy_on_the_server_is_replaced(tmp_path, comfy, jobs):
    alice = portrait(tmp_path, "alice", (200, 40, 40))
    damaged = comfy.input_dir / "reelforge" / reference_name(alice)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not the portrait")
    g = gen(comfy.url, write_template(tmp_path, STITCH))
    job = jobs(make_shot(1), stage="images")
    job.references = (alice,)
    g.generate(make_shot(1), job)
    assert uploads(comfy) == 1 and damaged.read_bytes() == alice.path.read_bytes()  # overwritten, not renamed
    assert comfy.posts()[0]["prompt"]["2"]["inputs"]["image"] == f"reelforge/{damaged.name}"
    g.close()


def test_references_are_in_the_fingerprint_and_a_changed_file_is_refused(tmp_path, comfy, jobs):
    alice, bob = portrait(tmp_path, "alice", (200, 40, 40)), portrait(tmp_path, "bob", (40, 40, 200))
    g = gen(comfy.url, write_template(tmp_path, STITCH))
    shot = make_shot(1)
    job = jobs(shot, stage="images")
    prints = set()
    for refs in ((), (alice,), (bob,), (alice, bob)):
        job.references = refs
        prints.add(g.backend.fingerprint(shot, job, None))
    assert len(prints) == 4
    Image.new("RGB", (32, 40), (1, 2, 3)).save(alice.path)  # replaced behind the record's back
    job.references = (alice,)
    with pytest.raises(StageError, match="changed since it was recorded"):
        g.generate(shot, job)
    assert uploads(comfy) == 0 and comfy.posts() == []
    g.close()


# -- pre-flight ------------------------------------------------------------------------------

def test_preflight_refuses_a_template_whose_custom_nodes_are_missing(comfy):
    g = ComfyImageGenerator(ImageOptions(urls=(comfy.url,), template="sdxl-ipadapter"))
    with pytest.raises(ServiceError) as info:
        g.preflight()
    message = str(info.value)
    assert "has no node class IPAdapterAdvanced, IPAdapterUnifiedLoader needed by template sdxl-ipadapter" \
        in message
    assert "install ComfyUI_IPAdapter_plus (https://github.com/cubiq/ComfyUI_IPAdapter_plus) for " \
           "IPAdapterAdvanced, IPAdapterUnifiedLoader" in message
    assert comfy.posts() == []
    g.close()
    # the edit-model template uses nodes built into ComfyUI 0.3.64: accepted as it is
    ComfyImageGenerator(ImageOptions(urls=(comfy.url,), template="qwen-image-edit")).preflight()


def test_adapter_template_runs_on_a_server_with_the_node_pack(tmp_path, comfy, jobs):
    comfy.extra_nodes = dict(IPADAPTER_PLUS)
    g = ComfyImageGenerator(ImageOptions(urls=(comfy.url,), template="sdxl-ipadapter", poll_interval_s=0.05))
    g.preflight()
    alice = portrait(tmp_path, "alice", (200, 40, 40))
    shot = make_shot(1)
    job = jobs(shot, stage="images")
    job.references = (alice,)
    assert g.generate(shot, job).is_file()
    [body] = comfy.posts()
    wf = body["prompt"]
    assert wf["10"]["inputs"]["image"] == f"reelforge/{reference_name(alice)}"
    assert wf["8"]["inputs"]["model"] == ["3", 0] and "4" not in wf and "11" not in wf
    assert wf["5"]["inputs"]["text"] == shot.image_prompt and wf["8"]["inputs"]["seed"] == shot.seed
    g.close()


# -- a real process, SIGKILLed ---------------------------------------------------------------

def _env(fake_url: str, refs: list[Reference]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0", REELFORGE_PLUGINS="comfy.ref_plugin",
               REELFORGE_COMFY_URL=fake_url, REELFORGE_TEST_REFS=",".join(f"{r.name}={r.path}" for r in refs),
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def test_upload_happens_once_across_a_sigkill_and_resume(tmp_path, comfy):
    refs = [portrait(tmp_path, "alice", (200, 40, 40)), portrait(tmp_path, "bob", (40, 40, 200))]
    env = _env(comfy.url, refs)
    out = tmp_path / "output"
    saving = comfy.hold("SaveImage")  # the first still is on the server when the run is killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "reelforge", "run", "Two friends mend a boat", "--new", "--image-gen", "comfyui-refs",
         "-o", "shots=3", "-o", f"image.template={write_template(tmp_path, STITCH)}",
         "-o", "image.poll_interval_s=0.05", "-o", "image.server_grace_s=120",
         "--output-dir", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def held() -> bool:
        assert proc.poll() is None, proc.stdout.read()
        return comfy.held()

    comfy.wait_until(held, timeout=120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert uploads(comfy) == 2
    saving.set()
    resumed = subprocess.run([sys.executable, "-m", "reelforge", "resume", "--output-dir", str(out)],
                             env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert uploads(comfy) == 2  # the resumed process asked the server, and sent nothing again
    assert any(p == "/view" for m, p, _ in comfy.requests)
    # The shots' stills (the cast step's portraits, made first by the same generator, aside)
    prompts = [b["prompt"] for b in comfy.posts() if "/images_shot" in json.dumps(b["prompt"])]
    assert len(prompts) == 3  # the killed still was adopted, not submitted again
    want = [f"reelforge/{reference_name(r)}" for r in refs]
    assert all([p["2"]["inputs"]["image"], p["3"]["inputs"]["image"]] == want for p in prompts)
