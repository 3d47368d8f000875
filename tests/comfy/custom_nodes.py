"""/object_info entries of custom node classes, for fake servers that "have" a node pack
installed. Transcribed from the pack's INPUT_TYPES (cubiq/ComfyUI_IPAdapter_plus,
IPAdapterPlus.py), in the shape ComfyUI 0.3.64 serves: input name -> [type or combo, options]."""

from __future__ import annotations

from typing import Any

_FLOAT = "FLOAT"
WEIGHT_TYPES = ["linear", "ease in", "ease out", "ease in-out", "reverse in-out", "weak input", "weak output",
                "weak middle", "strong middle", "style transfer", "composition", "strong style transfer",
                "style and composition", "style transfer precise", "composition precise"]
PRESETS = ["LIGHT - SD1.5 only (low strength)", "STANDARD (medium strength)", "VIT-G (medium strength)",
           "PLUS (high strength)", "PLUS FACE (portraits)", "FULL FACE - SD1.5 only (portraits stronger)"]


def _node(required: dict, optional: dict | None = None, outputs: tuple[str, ...] = ("MODEL",)) -> dict[str, Any]:
    return {"input": {"required": required, **({"optional": optional} if optional else {})},
            "output": list(outputs), "output_node": False, "category": "ipadapter"}


IPADAPTER_PLUS: dict[str, Any] = {
    "IPAdapterUnifiedLoader": _node({"model": ["MODEL"], "preset": [PRESETS]}, {"ipadapter": ["IPADAPTER"]},
                                    outputs=("MODEL", "IPADAPTER")),
    "IPAdapterAdvanced": _node(
        {"model": ["MODEL"], "ipadapter": ["IPADAPTER"], "image": ["IMAGE"],
         "weight": [_FLOAT, {"default": 1.0, "min": -1, "max": 5, "step": 0.05}],
         "weight_type": [WEIGHT_TYPES],
         "combine_embeds": [["concat", "add", "subtract", "average", "norm average"]],
         "start_at": [_FLOAT, {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}],
         "end_at": [_FLOAT, {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}],
         "embeds_scaling": [["V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty"]]},
        {"image_negative": ["IMAGE"], "attn_mask": ["MASK"], "clip_vision": ["CLIP_VISION"]}),
}
