"""The fake ComfyUI against the recorded transcripts: if these drift, the backend tests
stop meaning anything."""

from __future__ import annotations

import json

import httpx
import pytest

from reelforge.plugins.comfy_render.client import EventStream

from .fake_comfy import TRANSCRIPTS


def transcript(name: str) -> dict:
    return json.loads((TRANSCRIPTS / f"{name}.json").read_text())


def recorded(name: str, label: str) -> dict:
    for e in transcript(name)["timeline"]:
        if e.get("kind") == "http" and e["request"].get("label") == label:
            return e
    raise KeyError(label)


def http(comfy):
    return httpx.Client(base_url=comfy.url, trust_env=False)


def test_event_order_matches_scenario_01(comfy):
    comfy.noise = False
    t = transcript("01_image_emptyimage_saveimage")
    stream = EventStream(comfy.url, t["client_id"])
    assert stream.connect()
    types = []
    with http(comfy) as c:
        r = c.post("/prompt", json={"prompt": t["workflow_api"], "client_id": t["client_id"]})
        pid = r.json()["prompt_id"]
        while True:
            msg = stream.next(5)
            types.append(msg["type"])
            if msg["type"] == "executing" and msg["data"]["node"] is None:
                break
        stream.close()
        assert types == t["ws_type_sequence"]
        entry = c.get(f"/history/{pid}").json()[pid]
        want = t["timeline"][22]["response"]["json"]["d3f11114-3486-4376-8bde-854c6295ae7f"]
        assert entry.keys() == want.keys()
        assert entry["outputs"] == want["outputs"]  # {"2": {"images": [shot001_00001_.png in story/]}}
        assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in want["status"]["messages"]]
        assert entry["prompt"][2] == want["prompt"][2] and entry["prompt"][4] == ["2"]


@pytest.mark.parametrize("label", [
    "unknown class_type", "missing required input (EmptyImage.width)", "link to nonexistent node",
    "value below min (width=0)", "value above max (width=99999)",
    "classic combo value not in list (ImageScale.upscale_method='foo')",
    "no output node in prompt", "node without class_type", "empty prompt object",
    "body without 'prompt' key",
])
def test_validation_errors_match_scenario_03(comfy, label):
    rec = recorded("03_validation_errors", label)
    with http(comfy) as c:
        r = c.post("/prompt", json=rec["request"]["json"])
    assert r.status_code == rec["response"]["status"] == 400
    got, want = r.json(), rec["response"]["json"]
    assert got["error"]["type"] == want["error"]["type"]
    assert got["error"]["message"] == want["error"]["message"]
    assert got["node_errors"].keys() == want["node_errors"].keys()
    for nid, info in want["node_errors"].items():
        mine = got["node_errors"][nid]
        assert mine["class_type"] == info["class_type"]
        assert mine["dependent_outputs"] == info["dependent_outputs"]
        assert [e["type"] for e in mine["errors"]] == [e["type"] for e in info["errors"]]
        assert [e["message"] for e in mine["errors"]] == [e["message"] for e in info["errors"]]


def test_partial_acceptance_and_unvalidated_v3_combo_match_scenario_03(comfy):
    rec = recorded("03_validation_errors", "one good output + one broken output (partial acceptance)")
    avi = recorded("03_validation_errors", "v3-node combo value not in list (SaveVideo.format='avi'): "
                                           "NOT caught by validation, accepted and fails at execution")
    with http(comfy) as c:
        r = c.post("/prompt", json=rec["request"]["json"])
        assert r.status_code == 200
        assert r.json()["node_errors"]["3"]["dependent_outputs"] == ["3"]
        pid = r.json()["prompt_id"]
        r2 = c.post("/prompt", json=avi["request"]["json"])
        assert r2.status_code == 200 and r2.json()["node_errors"] == {}
        comfy.wait_until(lambda: r2.json()["prompt_id"] in comfy.history)
        entry = c.get(f"/history/{pid}").json()[pid]
        assert entry["prompt"][4] == ["2"] and list(entry["outputs"]) == ["2"]
        failed = c.get(f"/history/{r2.json()['prompt_id']}").json()[r2.json()["prompt_id"]]
        assert failed["status"]["status_str"] == "error" and failed["status"]["completed"] is False
        err = [m for m in failed["status"]["messages"] if m[0] == "execution_error"][0][1]
        assert err["node_id"] == "4" and err["node_type"] == "SaveVideo"


def test_history_is_empty_until_done_and_queue_shapes(comfy):
    comfy.node_latency = 0.05
    saving = comfy.hold("SaveImage")  # mine-1 runs and mine-2 waits until the test has looked
    wf = transcript("01_image_emptyimage_saveimage")["workflow_api"]
    with http(comfy) as c:
        pid = c.post("/prompt", json={"prompt": wf, "prompt_id": "mine-1"}).json()["prompt_id"]
        c.post("/prompt", json={"prompt": wf, "prompt_id": "mine-2"})
        assert pid == "mine-1"
        comfy.wait_until(lambda: comfy.held("mine-1"))
        assert c.get("/history/mine-1").json() == {}
        q = c.get("/queue").json()
        assert [i[1] for i in q["queue_running"]] == ["mine-1"]
        assert [i[1] for i in q["queue_pending"]] == ["mine-2"]
        assert len(q["queue_running"][0]) == 5 and q["queue_running"][0][4] == ["2"]
        assert c.get("/prompt").json() == {"exec_info": {"queue_remaining": 2}}
        r = c.post("/queue", json={"delete": ["mine-2"]})
        assert r.status_code == 200 and r.content == b""
        saving.set()
        comfy.wait_until(lambda: "mine-1" in comfy.history)
        assert c.get("/history/mine-2").json() == {}  # deleted while pending: never in history
        assert c.get("/history/does-not-exist").json() == {}


def test_uploads_match_scenario_02(comfy):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 160
    with http(comfy) as c:
        up = lambda data, **form: c.post("/upload/image", files={"image": ("keyframe.png", data, "image/png")},
                                         data={"type": "input", **form})
        assert up(png).json() == {"name": "keyframe.png", "subfolder": "", "type": "input"}
        assert up(png).json()["name"] == "keyframe.png"  # identical bytes: deduplicated
        assert up(png + b"x").json()["name"] == "keyframe (1).png"
        assert up(png + b"y", overwrite="true").json()["name"] == "keyframe.png"
        assert up(png, subfolder="session_abc").json() == {"name": "keyframe.png",
                                                           "subfolder": "session_abc", "type": "input"}
        r = c.post("/upload/image", files={"other": ("x.png", png, "image/png")})
        assert r.status_code == 400 and r.content == b""
        # an uploaded input is served by /view?type=input (scenario 10), in its subfolder too
        view = c.get("/view", params={"filename": "keyframe.png", "subfolder": "session_abc", "type": "input"})
        assert view.status_code == 200 and view.content == png
        assert view.headers["content-type"] == "image/png"
        assert c.get("/view", params={"filename": "nope.png", "subfolder": "session_abc",
                                      "type": "input"}).status_code == 404


@pytest.mark.parametrize("label", ["missing file -> 404", "'..' in filename -> 400", "unknown type",
                                   "subfolder escaping -> 403"])
def test_view_errors_match_scenario_10(comfy, label):
    rec = recorded("10_misc_endpoints", label)
    with http(comfy) as c:
        assert c.get(rec["request"]["path"]).status_code == rec["response"]["status"]


def test_restart_forgets_history_keeps_files_and_numbering(comfy):
    wf = transcript("01_image_emptyimage_saveimage")["workflow_api"]
    with http(comfy) as c:
        c.post("/prompt", json={"prompt": wf, "prompt_id": "before"})
        comfy.wait_until(lambda: "before" in comfy.history)
    comfy.restart()
    with http(comfy) as c:
        assert c.get("/history/before").json() == {} and c.get("/history").json() == {}
        assert c.get("/view", params={"filename": "shot001_00001_.png", "subfolder": "story"}).status_code == 200
        c.post("/prompt", json={"prompt": wf, "prompt_id": "after"})
        comfy.wait_until(lambda: "after" in comfy.history)
        files = comfy.history["after"]["outputs"]["2"]["images"]
        assert files == [{"filename": "shot001_00002_.png", "subfolder": "story", "type": "output"}]
