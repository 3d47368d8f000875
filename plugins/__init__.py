"""reelforge's built-in plugins. Each is registered exactly like a third-party plugin;
BUILTIN lists them (entry-point name -> module), as pyproject.toml's entry points do."""

BUILTIN: dict[str, str] = {
    "story_offline": "plugins.story_llm.offline",
    "story_openai": "plugins.story_llm.openai_compat",
    "story_ollama": "plugins.story_llm.ollama",
    "image_storyboard": "plugins.image_gen.storyboard",
    "kenburns": "plugins.kenburns",
    "comfy_render": "plugins.comfy_render",
    "image_comfyui": "plugins.image_gen.comfyui",
    "narration": "plugins.narration",
}
