"""Workflow templates: an API-format ComfyUI workflow plus the places reelforge writes its
values into (input image, prompts, seed, size, frames, fps, filename prefix).

A template file is a *reelforge template*::

    {"reelforge_template": 1, "kind": "video", "workflow": {...API format...},
     "inject": {"image": "1.image", "frames": "2.amount", "fps": ["3.fps"]},
     "output": "4", "optional": [], "frames": {"multiple_of": 4, "plus": 1},
     "defaults": {"width": 832, "height": 480, "fps": 16}}

Reference images (a character's portrait) go into LoadImage nodes named ``reference_1``,
``reference_2``... (or ``"references": [target, ...]``, slot by slot); see references.py for
what happens to the slots a shot has no reference for.

A template file may instead be a bare API-format workflow ("Export (API)" in ComfyUI) whose nodes carry titles such as
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
from reelforge.plugins.comfy_render.references import MAX_REFERENCES, REFERENCE_KEY, fewest_references, prune

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
    "sdxl-ipadapter": "sdxl_ipadapter.json",
    "qwen-image-edit": "qwen_image_edit.json",
}

_TITLE_TOKEN = re.compile(r"reelforge\.([a-z][a-z0-9_]*)(?:=([A-Za-z0-9_]+))?")


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
    reference_slots: int = 0
    "How many reference images it takes (targets reference_1 .. reference_N)."
    min_references: int = 0
    "The fewest it can be drawn with (the empty slots' nodes pruned, see references.py)."
    bypass: Mapping[str, str] = attrs.field(factory=dict)
    "Node id -> the input its output passes on when a reference it needs is missing."
    optional_inputs: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    "Node id -> inputs dropped (not the node) when the reference they carry is missing."
    custom_nodes: Mapping[str, str] = attrs.field(factory=dict)
    "Node class -> the custom node pack that provides it, for the pre-flight message."

    def class_types(self) -> set[str]:
        return {node["class_type"] for node in self.workflow.values()}

    def frame_count(self, duration_s: float, fps: float) -> int:
        m, plus = max(1, self.frames_multiple_of), self.frames_plus
        raw = max(1, round(duration_s * fps))
        k = max(0, round((raw - plus) / m))
        return max(1, k * m + plus)

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the workflow with ``values`` (injection key -> value) written in.
        Keys without a target are ignored; a value is coerced to the type already there.
        Reference slots (``reference_K``) without a value are pruned from the copy."""
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
        empty = [f"reference_{k}" for k in range(1, self.reference_slots + 1)
                 if values.get(f"reference_{k}") is None]
        if empty:
            drop = {t.node for key in empty for t in self.targets.get(key, ())}
            wf, _ = prune(wf, drop, bypass=self.bypass, optional=self.optional_inputs)
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
    known = _Known()
    unknown = set(spec) - {"reelforge_template", "kind", "description", "inject", "output",
                           "optional", "frames", "defaults", "notes", "models", "seed_modulo",
                           "bypass", "optional_inputs", "custom_nodes"}
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
                                  f"(valid: {_valid_keys()})")
            targets.setdefault(key, []).append(
                _resolve(workflow, node_id, input_name or None, key, where))
    inject = spec.get("inject", {})
    if not isinstance(inject, dict):
        raise ConfigError(f"{where}: 'inject' must be an object of key -> target")
    for key, raw in inject.items():
        if key == "references":
            if not isinstance(raw, list) or not raw:
                raise ConfigError(f"{where}: 'references' must be a list of targets, one per "
                                  f"reference slot")
            for k, ref in enumerate(raw, 1):
                targets[f"reference_{k}"] = [_target_from_ref(workflow, ref, f"reference_{k}", where)]
            continue
        if key not in known:
            raise ConfigError(f"{where}: {key!r} is not an injection point "
                              f"(valid: {_valid_keys()})")
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
    slots, bypass, optional_inputs, custom = _reference_spec(workflow, spec, targets, where)
    template = Template(name=name, kind=kind, workflow=workflow,
                        targets={k: tuple(v) for k, v in targets.items()}, output=output,
                        frames_multiple_of=multiple, frames_plus=plus, defaults=dict(defaults),
                        seed_modulo=int(spec["seed_modulo"]) if spec.get("seed_modulo") else None,
                        reference_slots=slots, bypass=bypass, optional_inputs=optional_inputs,
                        custom_nodes=custom)
    if slots:
        fewest = fewest_references(template)
        if fewest is None:
            raise ConfigError(f"{where}: its output does not survive even with every reference "
                              f"slot filled; check the reference targets")
        template = attrs.evolve(template, min_references=fewest)
    return template


class _Known:
    """The injection keys: the fixed ones and reference_1 .. reference_MAX."""

    def __contains__(self, key: object) -> bool:
        return key in INJECTION_KEYS or (isinstance(key, str) and _reference_number(key) is not None)



def _valid_keys() -> str:
    return ", ".join(sorted(INJECTION_KEYS)) + f", reference_1 .. reference_{MAX_REFERENCES}"


def _reference_number(key: str) -> int | None:
    m = REFERENCE_KEY.fullmatch(key)
    return int(m.group(1)) if m and 1 <= int(m.group(1)) <= MAX_REFERENCES else None


def _reference_spec(workflow: Mapping[str, Any], spec: Mapping[str, Any],
                    targets: Mapping[str, list[Target]], where: str
                    ) -> tuple[int, dict[str, str], dict[str, tuple[str, ...]], dict[str, str]]:
    """The reference slots (numbered 1..N without a gap, each its own node) and the pruning
    and pre-flight hints: ``bypass``, ``optional_inputs``, ``custom_nodes``."""
    numbers = sorted(n for key in targets if (n := _reference_number(key)) is not None)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ConfigError(f"{where}: reference slots must be numbered reference_1, reference_2, ... "
                          f"without a gap (has {', '.join(f'reference_{n}' for n in numbers)})")
    seen: dict[str, str] = {}
    for n in numbers:
        for t in targets[f"reference_{n}"]:
            if seen.setdefault(t.node, f"reference_{n}") != f"reference_{n}":
                raise ConfigError(f"{where}: node {t.node} is both {seen[t.node]} and reference_{n}; "
                                  f"each slot needs its own LoadImage node")
    bypass = spec.get("bypass") or {}
    optional_inputs = spec.get("optional_inputs") or {}
    custom = spec.get("custom_nodes") or {}
    if not isinstance(bypass, dict) or not all(isinstance(v, str) for v in bypass.values()):
        raise ConfigError(f"{where}: 'bypass' must map node ids to an input name")
    if not isinstance(optional_inputs, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in optional_inputs.values()):
        raise ConfigError(f"{where}: 'optional_inputs' must map node ids to a list of input names")
    for node_id, input_name in bypass.items():
        node = workflow.get(str(node_id))
        if node is None or not isinstance(node["inputs"].get(input_name), list):
            raise ConfigError(f"{where}: bypass: node {node_id} has no linked input {input_name!r}")
    for node_id in optional_inputs:
        if str(node_id) not in workflow:
            raise ConfigError(f"{where}: optional_inputs: node {node_id!r} is not in the workflow")
    if not isinstance(custom, dict) or not all(
            isinstance(k, str) and isinstance(v, list) for k, v in custom.items()):
        raise ConfigError(f"{where}: 'custom_nodes' must map a node pack to the list of its classes")
    by_class = {str(cls): pack for pack, classes in custom.items() for cls in classes}
    return (len(numbers), {str(k): v for k, v in bypass.items()},
            {str(k): tuple(v) for k, v in optional_inputs.items()}, by_class)


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
        tried = INJECTION_KEYS.get(key, ("image",))  # a reference slot: LoadImage.image
        input_name = next((n for n in tried if n in inputs), None)
        if input_name is None:
            raise ConfigError(f"{where}: {key}: node {node_id} ({cls}) has none of the inputs "
                              f"{', '.join(tried)}; name one, e.g. "
                              f"'reelforge.{key}=INPUT'")
    if input_name not in inputs:
        raise ConfigError(f"{where}: {key} points at input {input_name!r} of node {node_id} "
                          f"({cls}), which has no such input (has: {', '.join(inputs) or 'none'})")
    if isinstance(inputs[input_name], list):
        raise ConfigError(f"{where}: {key}: input {input_name!r} of node {node_id} ({cls}) is "
                          f"linked to node {inputs[input_name][0]}; reelforge can only set widget values")
    return Target(node_id, input_name)
