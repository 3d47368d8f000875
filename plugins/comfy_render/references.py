"""Reference images (a character's portrait) in a ComfyUI workflow.

A template declares reference slots as it declares its other injection points:
``reference_1``, ``reference_2``... each naming a LoadImage node (by ``inject`` or by the
node title ``reelforge.reference_1``), or ``"references": [target, ...]``, one per slot.
A shot's references fill the slots in order; its extra references are left out.

A slot the shot has no reference for is **pruned**: its LoadImage node is removed, and so is
every node that needs it, except that
- an input listed as optional (``optional_inputs``, or the node class's own optional image
  inputs in OPTIONAL_INPUTS) is dropped instead: the node stays, without that image;
- a node with a bypass (``bypass``, or BYPASS for its class) is removed and whatever read its
  output reads its bypass input instead, as ComfyUI's own "bypass" does (an IPAdapter
  applier passes its model through).
A template whose output does not survive without some slot needs that many references
(``Template.min_references``); a shot with fewer is refused naming the template.

Uploads: each reference goes to a server once (POST /upload/image into ``input/reelforge/``
under a name made from its digest, ``rf_<sha256[:20]>.png``). Before uploading, the server is
asked (GET /view?type=input) whether it has that file with those bytes already, so a resumed
run, another worker or a second backend of the run does not upload again; within a process
the answer is remembered per server.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from reelforge.errors import StageError

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.client import ComfyClient
    from reelforge.plugins.comfy_render.workflow import Template
    from reelforge.protocols import Reference, ShotJob

log = logging.getLogger("reelforge.comfyui")

REFERENCE_KEY = re.compile(r"reference_([0-9]+)")
MAX_REFERENCES = 16
_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")
SUBFOLDER = "reelforge"
"Where references (and stills) are uploaded, in the server's input folder."

#: Node class -> inputs that may be left unconnected (so a missing reference drops the input,
#: not the node). Taken from the classes' INPUT_TYPES "optional" sections.
OPTIONAL_INPUTS: dict[str, frozenset[str]] = {
    "TextEncodeQwenImageEdit": frozenset({"image", "vae"}),
    "TextEncodeQwenImageEditPlus": frozenset({"image1", "image2", "image3", "vae"}),
    "ReferenceLatent": frozenset({"latent"}),
    "ImageStitch": frozenset({"image2"}),
    "IPAdapterAdvanced": frozenset({"image_negative", "attn_mask", "clip_vision"}),
}

#: Node class -> the inputs (first linked one wins) whose value its first output passes on
#: when the node is bypassed for a missing reference.
BYPASS: dict[str, tuple[str, ...]] = {
    "IPAdapterAdvanced": ("model",),
    "IPAdapter": ("model",),
    "IPAdapterFaceID": ("model",),
    "ApplyPulid": ("model",),
    "ApplyPulidAdvanced": ("model",),
    "ImageBatch": ("image1", "image2"),
}

#: Node class -> the custom node pack to install for it (the pre-flight refusal names it).
NODE_PACKS: dict[str, str] = {
    **{cls: "ComfyUI_IPAdapter_plus (https://github.com/cubiq/ComfyUI_IPAdapter_plus)"
       for cls in ("IPAdapterUnifiedLoader", "IPAdapterAdvanced", "IPAdapter", "IPAdapterModelLoader",
                   "IPAdapterFaceID", "IPAdapterUnifiedLoaderFaceID", "IPAdapterInsightFaceLoader")},
    **{cls: "PuLID_ComfyUI (https://github.com/cubiq/PuLID_ComfyUI)"
       for cls in ("ApplyPulid", "ApplyPulidAdvanced", "PulidModelLoader", "PulidInsightFaceLoader",
                   "PulidEvaClipLoader")},
    **{cls: "ComfyUI itself: update it (0.3.64 has this node built in)"
       for cls in ("TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "ReferenceLatent",
                   "FluxKontextImageScale", "FluxKontextMultiReferenceLatentMethod", "CFGNorm")},
}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def prune(workflow: dict[str, Any], drop: Iterable[str], *, bypass: Mapping[str, str] = {},
          optional: Mapping[str, Iterable[str]] = {}) -> tuple[dict[str, Any], set[str]]:
    """Remove the nodes ``drop`` from ``workflow`` (changed in place and returned) and what
    needs them (see the module's docstring); returns the workflow and the removed ids."""
    removed: dict[str, list | None] = {str(n): None for n in drop if str(n) in workflow}

    def resolve(link: list) -> list | None:
        seen = set()
        while str(link[0]) in removed:
            through = removed[str(link[0])]
            if through is None or str(link[0]) in seen:
                return None
            seen.add(str(link[0]))
            link = through
        return list(link)

    changed = True
    while changed:
        changed = False
        for node_id, node in workflow.items():
            if node_id in removed:
                continue
            inputs = node.get("inputs") or {}
            cls = node.get("class_type")
            may_drop = set(optional.get(node_id, ())) | OPTIONAL_INPUTS.get(cls, frozenset())
            for name, value in list(inputs.items()):
                if not (_is_link(value) and str(value[0]) in removed):
                    continue
                changed = True
                through = resolve(value)
                if through is not None:
                    inputs[name] = through  # its source was bypassed: read what it passed on
                elif name in may_drop:
                    del inputs[name]
                else:  # a required input is gone: so is this node (bypassed if it can be)
                    ways = (bypass[node_id],) if node_id in bypass else BYPASS.get(cls, ())
                    via = next((w for w in ways if w != name and _is_link(inputs.get(w))
                                and resolve(inputs[w]) is not None), None)
                    removed[node_id] = resolve(inputs[via]) if via else None
                    break
    for node_id in removed:
        del workflow[node_id]
    return workflow, set(removed)


def fewest_references(template: Template) -> int | None:
    """The fewest references the template can be drawn with (its output node, or when it
    names none, one of its final nodes, surviving the pruning); None when not even all."""
    sinks = {nid for nid in template.workflow} - {
        str(v[0]) for node in template.workflow.values() for v in node["inputs"].values() if _is_link(v)}
    needed = {template.output} if template.output else sinks
    for filled in range(template.reference_slots + 1):
        wf = template.render({f"reference_{k}": "x.png" for k in range(1, filled + 1)})
        if needed & set(wf):
            return filled
    return None


def reference_name(ref: Reference) -> str:
    """The name a reference is uploaded under: its digest, so the same bytes get the same name."""
    suffix = ref.path.suffix.lower()
    if not _SUFFIX.fullmatch(suffix):
        suffix = ".png"
    return f"rf_{ref.sha256[:20]}{suffix}"


def reference_values(template: Template, refs: Sequence[Reference], names: Sequence[str] | None,
                     shot_id: int) -> dict[str, str]:
    """The reference_K values for a shot: the uploaded names (``names``) or, for the
    fingerprint, the names the digests give. Refuses a shot with too few references."""
    if len(refs) < template.min_references:
        raise StageError(f"shot {shot_id}: template {template.name} needs at least "
                         f"{template.min_references} reference image(s); the shot has {len(refs)} "
                         f"(give its characters portraits, or use a template with fewer slots)")
    used = refs[:template.reference_slots]
    if len(refs) > len(used):
        log.info("shot %s: template %s takes %d reference(s); %s left out", shot_id, template.name,
                 len(used), ", ".join(r.name for r in refs[len(used):]))
    if names is None:
        names = [f"{SUBFOLDER}/{reference_name(r)}" for r in used]
    return {f"reference_{k}": name for k, name in enumerate(names[:len(used)], 1)}


class ReferenceUploads:
    """Which references each server has, asked once per server and process (thread-safe:
    two shots with the same portrait never upload it twice at once)."""

    def __init__(self) -> None:
        self._have: dict[tuple[str, str], str] = {}
        "(server, sha256) -> the LoadImage value of that reference there."
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def ensure(self, client: ComfyClient, refs: Sequence[Reference], job: ShotJob) -> list[str]:
        """The LoadImage value of each reference on this server, uploading those it lacks."""
        return [self._one(client, ref, job) for ref in refs]

    def _one(self, client: ComfyClient, ref: Reference, job: ShotJob) -> str:
        key = (client.base_url, ref.sha256)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._have:
                return self._have[key]
            try:
                data = ref.path.read_bytes()
            except OSError as exc:
                raise StageError(f"shot {job.shot.id}: cannot read {ref.name}'s reference image "
                                 f"{ref.path}: {exc.strerror or exc}") from exc
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise StageError(f"shot {job.shot.id}: {ref.name}'s reference image {ref.path} changed "
                                 f"since it was recorded (its digest differs); set it again")
            name = reference_name(ref)
            if client.input_digest(name, subfolder=SUBFOLDER) == ref.sha256:
                value = f"{SUBFOLDER}/{name}"
                log.info("shot %s: %s has %s's reference already", job.shot.id, client.base_url, ref.name)
            else:
                # overwrite: the name is the digest, so whatever has it now is damaged or partial
                value = client.upload_image(ref.path, name=name, subfolder=SUBFOLDER, overwrite=True)
                log.info("shot %s: uploaded %s's reference to %s as %s", job.shot.id, ref.name,
                         client.base_url, value)
            self._have[key] = value
            return value
