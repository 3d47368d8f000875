"""Workflow templates: an API-format ComfyUI workflow plus the places reelforge writes its
values into (input image, prompts, seed, size, frames, fps, filename prefix).

A template file is either a *reelforge template*::

    {"reelforge_template": 1, "kind": "video", "workflow": {...API format...},
     "inject": {"image": "1.image", "frames": "2.amount", "fps": ["3.fps"]},
     "output": "4", "optional": [], "frames": {"multiple_of": 4, "plus": 1},
     "defaults": {"width": 832, "height": 480, "fps": 16}}

or a bare API-format workflow ("Export (API)" in ComfyUI) whose nodes carry titles such as
``reelforge.image`` or ``reelforge.seed=noise_seed`` in ``_meta.title``; a separate mapping
file (the same keys as above, without ``workflow``) may add to or replace the titles.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import attrs

from reelforge.errors import ConfigError

#: What reelforge can inject, and the input names tried (in order) when a node is picked by
#: its title without naming an input.
INJECTION_KEYS: dict[str, tuple[str, ...]] = {
    "image": ("image", "start_image"),
    "prompt": ("text", "prompt", "positive", "text_g"),
    "negative": ("text", "negative", "prompt", "text_g"),
    "seed": ("seed", "noise_seed"),
    "width": ("width",),
    "height": ("height",),
    "frames": ("length", "frames", "num_frames", "video_frames", "amount", "frame_count"),
    "fps": ("fps", "frame_rate"),
    "filename_prefix": ("filename_prefix",),
}

#: Injection points a template of each kind must have unless it lists them as optional.
REQUIRED: dict[str, tuple[str, ...]] = {"image": ("prompt",), "video": ("image",)}

BUILTIN_TEMPLATES = {
    "image-basic": "image_basic.json",
    "video-basic": "video_basic.json",
    "wan22-i2v": "wan22_i2v.json",
    "ltxv-i2v": "ltxv_i2v.json",
}

_TITLE_TOKEN = re.compile(r"reelforge\.([a-z_]+)(?:=([A-Za-z0-9_]+))?")


@attrs.frozen
class Target:
    node: str
    "Node id in the API-format workflow."
    input: str
    "Input name on that node."


@attrs.frozen
class Template:
    """A checked workflow and where each reelforge value goes."""

    name: str
    "Where it came from (file path or built-in name), for messages."
    kind: str
    "'image' or 'video'."
    workflow: Mapping[str, Any]
    "The API-format workflow, never mutated (render() copies it)."
    targets: Mapping[str, tuple[Target, ...]]
    "Injection key -> the node inputs it is written to."
    output: str | None = None
    "Node id whose files are the result; None means any output node's."
    frames_multiple_of: int = 1
    "Frame counts are rounded to k * multiple_of + frames_plus (Wan: 4k+1, LTX: 8k+1)."
    frames_plus: int = 0
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    "Default width/height/fps for this template (options override)."
    seed_modulo: int | None = None
    "When set, the seed is taken modulo this (e.g. a colour input that stops at 0xFFFFFF)."

    def class_types(self) -> set[str]:
        return {node["class_type"] for node in self.workflow.values()}

    def frame_count(self, duration_s: float, fps: float) -> int:
        m, plus = max(1, self.frames_multiple_of), self.frames_plus
        raw = max(1, round(duration_s * fps))
        k = max(0, round((raw - plus) / m))
        return max(1, k * m + plus)

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the workflow with ``values`` (injection key -> value) written in.
        Keys without a target are ignored; a value is coerced to the type already there."""
        wf = copy.deepcopy(dict(self.workflow))
        values = dict(values)
        if self.seed_modulo and values.get("seed") is not None:
            values["seed"] = int(values["seed"]) % self.seed_modulo
        for key, value in values.items():
            if value is None:
                continue
            for target in self.targets.get(key, ()):
                inputs = wf[target.node]["inputs"]
                inputs[target.input] = _coerce(inputs.get(target.input), value)
        return wf


def _coerce(current: Any, value: Any) -> Any:
    if isinstance(current, bool) or isinstance(value, bool):
        return value
    if isinstance(current, int) and isinstance(value, (int, float)):
        return int(round(value))
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(current, str) and not isinstance(value, str):
        return str(value)
    return value


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("reelforge.plugins.comfy_render") / "templates" / BUILTIN_TEMPLATES[name]))


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from exc


def load_template(spec: str, *, kind: str, mapping: str = "") -> Template:
    """Load and check a template: ``spec`` is a built-in name or a file path; ``mapping`` an
    optional mapping file for a bare workflow. Raises ConfigError naming what is wrong."""
    if spec in BUILTIN_TEMPLATES:
        path, name = builtin_path(spec), spec
    else:
        path, name = Path(spec).expanduser(), spec
    data = _read_json(path, "ComfyUI template")
    if not isinstance(data, dict):
        raise ConfigError(f"ComfyUI template {name}: expected a JSON object, got {type(data).__name__}")
    if "workflow" in data or "reelforge_template" in data:
        spec_data = {k: v for k, v in data.items() if k != "workflow"}
        workflow = data.get("workflow")
    else:
        spec_data, workflow = {}, data
    if mapping:
        extra = _read_json(Path(mapping).expanduser(), "ComfyUI mapping")
        if not isinstance(extra, dict):
            raise ConfigError(f"ComfyUI mapping {mapping}: expected a JSON object")
        spec_data = {**spec_data, **extra,
                     "inject": {**spec_data.get("inject", {}), **extra.get("inject", {})}}
    return build_template(name, workflow, spec_data, kind=kind)


def build_template(name: str, workflow: Any, spec: Mapping[str, Any], *, kind: str) -> Template:
    where = f"ComfyUI template {name}"
    tkind = spec.get("kind", kind)
    if tkind != kind:
        raise ConfigError(f"{where} is a {tkind!r} template; the {kind} backend needs a {kind!r} one "
                          f"(set templates per backend: -o image.template=... -o video.template=...)")
    _check_workflow(workflow, where)
    known = set(INJECTION_KEYS)
    unknown = set(spec) - {"reelforge_template", "kind", "description", "inject", "output",
                           "optional", "frames", "defaults", "notes", "models", "seed_modulo"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    targets: dict[str, list[Target]] = {}
    # titles first, explicit mapping entries replace them key by key
    for node_id, node in workflow.items():
        title = str((node.get("_meta") or {}).get("title", ""))
        for key, input_name in _TITLE_TOKEN.findall(title):
            if key not in known:
                raise ConfigError(f"{where}: node {node_id} ({node['class_type']}) is titled "
                                  f"{title!r} but {key!r} is not an injection point "
                                  f"(valid: {', '.join(sorted(known))})")
            targets.setdefault(key, []).append(
                _resolve(workflow, node_id, input_name or None, key, where))
    inject = spec.get("inject", {})
    if not isinstance(inject, dict):
        raise ConfigError(f"{where}: 'inject' must be an object of key -> target")
    for key, raw in inject.items():
        if key not in known:
            raise ConfigError(f"{where}: {key!r} is not an injection point "
                              f"(valid: {', '.join(sorted(known))})")
        refs = raw if isinstance(raw, list) else [raw]
        targets[key] = [_target_from_ref(workflow, ref, key, where) for ref in refs]
    optional = set(spec.get("optional", ()))
    missing = [k for k in REQUIRED[kind] if k not in targets and k not in optional]
    if missing:
        raise ConfigError(
            f"{where} has no injection point for {', '.join(missing)}: add "
            f"\"inject\": {{\"{missing[0]}\": \"NODE_ID.INPUT\"}} to the template or mapping, "
            f"or title the node 'reelforge.{missing[0]}' (the {kind} backend is reading it; "
            f"set templates per backend with -o {kind}.template=...)")
    output = spec.get("output")
    if output is not None:
        output = str(output)
        if output not in workflow:
            raise ConfigError(f"{where}: output node {output!r} is not in the workflow")
    frames = spec.get("frames") or {}
    defaults = spec.get("defaults") or {}
    try:
        multiple, plus = int(frames.get("multiple_of", 1)), int(frames.get("plus", 0))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: 'frames' needs integer multiple_of and plus") from exc
    return Template(name=name, kind=kind, workflow=workflow,
                    targets={k: tuple(v) for k, v in targets.items()}, output=output,
                    frames_multiple_of=multiple, frames_plus=plus, defaults=dict(defaults),
                    seed_modulo=int(spec["seed_modulo"]) if spec.get("seed_modulo") else None)


def _check_workflow(workflow: Any, where: str) -> None:
    if not isinstance(workflow, dict) or not workflow:
        raise ConfigError(f"{where}: the workflow must be a non-empty JSON object of node id -> "
                          f"node (use ComfyUI's 'Export (API)' format)")
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node:
            hint = " (this looks like a UI-format workflow; export it in API format)" \
                if node_id in ("nodes", "links", "version", "last_node_id") else ""
            raise ConfigError(f"{where}: node {node_id!r} has no class_type{hint}")
        if not isinstance(node.get("inputs", {}), dict):
            raise ConfigError(f"{where}: node {node_id} ({node['class_type']}): inputs must be an object")
        node.setdefault("inputs", {})


def _target_from_ref(workflow: Mapping[str, Any], ref: Any, key: str, where: str) -> Target:
    if isinstance(ref, str):
        node_id, dot, input_name = ref.partition(".")
        return _resolve(workflow, node_id, input_name if dot else None, key, where)
    if isinstance(ref, dict):
        input_name = ref.get("input")
        if "node" in ref:
            return _resolve(workflow, str(ref["node"]), input_name, key, where)
        if "title" in ref:
            hits = [nid for nid, n in workflow.items()
                    if (n.get("_meta") or {}).get("title") == ref["title"]]
            if len(hits) != 1:
                raise ConfigError(f"{where}: {key}: {len(hits)} nodes are titled {ref['title']!r}; "
                                  f"need exactly one")
            return _resolve(workflow, hits[0], input_name, key, where)
    raise ConfigError(f"{where}: {key}: target {ref!r} must be \"NODE_ID.INPUT\", "
                      f"{{\"node\": ID, \"input\": NAME}} or {{\"title\": TITLE, \"input\": NAME}}")


def _resolve(workflow: Mapping[str, Any], node_id: str, input_name: str | None, key: str,
             where: str) -> Target:
    node = workflow.get(node_id)
    if node is None:
        raise ConfigError(f"{where}: {key} points at node {node_id!r}, which is not in the workflow")
    inputs = node["inputs"]
    cls = node["class_type"]
    if input_name is None:
        input_name = next((n for n in INJECTION_KEYS[key] if n in inputs), None)
        if input_name is None:
            raise ConfigError(f"{where}: {key}: node {node_id} ({cls}) has none of the inputs "
                              f"{', '.join(INJECTION_KEYS[key])}; name one, e.g. "
                              f"'reelforge.{key}=INPUT'")
    if input_name not in inputs:
        raise ConfigError(f"{where}: {key} points at input {input_name!r} of node {node_id} "
                          f"({cls}), which has no such input (has: {', '.join(inputs) or 'none'})")
    if isinstance(inputs[input_name], list):
        raise ConfigError(f"{where}: {key}: input {input_name!r} of node {node_id} ({cls}) is "
                          f"linked to node {inputs[input_name][0]}; reelforge can only set widget values")
    return Target(node_id, input_name)
