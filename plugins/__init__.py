"""reelforge's built-in plugins. Each is registered exactly like a third-party plugin;
BUILTIN lists them (entry-point name -> module), as pyproject.toml's entry points do."""

BUILTIN: dict[str, str] = {
    "story_offline": "reelforge.plugins.story_llm.offline",
    "story_openai": "reelforge.plugins.story_llm.openai_compat",
    "story_ollama": "reelforge.plugins.story_llm.ollama",
    "image_storyboard": "reelforge.plugins.image_gen.storyboard",
    "kenburns": "reelforge.plugins.kenburns",
    "comfy_render": "reelforge.plugins.comfy_render",
    "image_comfyui": "reelforge.plugins.image_gen.comfyui",
    "narration": "reelforge.plugins.narration",
}
