"""Issue 18 item 3: a shot's subject and the film's look are kept apart. Editing a shot's image
prompt changes what is in the picture and keeps the film's palette; a look edit changes the
look of one shot or the film; the storyboard card shows what the prompt asks for; sessions
planned with the style inside their image prompts resume without remaking anything."""

from __future__ import annotations

import colorsys
import json

import attrs
import pytest
from click.testing import CliRunner
from PIL import Image

from reelforge import hookimpl
from reelforge.cli.core import cli
from reelforge.engine.fingerprints import fingerprint
from reelforge.looks import carries, compose, resolve, without
from reelforge.plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions, plate_caption
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore
from reelforge.testing import registered

IDEA = "The rise and fall of an ancient trading city"
SMALL = ["-o", "storyboard.width=320", "-o", "storyboard.height=180", "-o", "kenburns.width=320",
         "-o", "kenburns.height=180", "-o", "kenburns.fps=8"]
OFFLINE = ["--narrator", "none", "-o", "shots=4", *SMALL]  # the offline defaults (no voice on this machine)
KITE = "a red kite over the harbour"


class Calls:
    """Counts the backend calls of a run (the runner's shot_started hook) and film builds."""

    def __init__(self):
        self.shots: dict[str, list[int]] = {}
        self.film = 0

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        self.shots[stage] = sorted([*self.shots.get(stage, []), shot.id])

    @hookimpl
    def stage_started(self, session, stage):
        self.film += stage == "assemble"


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)])


def run_cli(out, *args) -> Calls:
    calls = Calls()
    with registered(calls):
        r = invoke(out, *args)
    assert r.exit_code == 0, r.output
    return calls


def files(path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): sha256_file(p)
            for folder in ("images", "videos") for p in sorted((path / folder).glob("shot_*"))}


def hue_of(img) -> float:
    """The mean hue of a frame in degrees, weighted by saturation (a circular mean)."""
    import math

    small = img.convert("RGB").resize((64, 36))
    x = y = 0.0
    for r, g, b in small.get_flattened_data() if hasattr(small, "get_flattened_data") else small.getdata():
        h, s, _v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        x += s * math.cos(2 * math.pi * h)
        y += s * math.sin(2 * math.pi * h)
    return math.degrees(math.atan2(y, x)) % 360


def sky_hue(img) -> float:
    """The mean hue of a storyboard frame's sky (below the card's header, above the horizon):
    what the film's palette paints, whatever the setting puts on the ground."""
    w, h = img.size
    return hue_of(img.crop((0, int(h * 0.08), w, int(h * 0.35))))


def hue_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def plate(path):
    with Image.open(path) as im:
        return im.convert("RGB")


# -- the parts --------------------------------------------------------------------------------

STYLE = "warm terracotta and teal palette, wide-angle lens, hazy desert light"


def test_compose_adds_the_look_once():
    assert compose("a kite over the harbour", STYLE) == f"a kite over the harbour, {STYLE}"
    assert compose("A kite over the harbour.", STYLE + ".") == f"A kite over the harbour. {STYLE}"
    assert compose("", STYLE) == STYLE and compose("a kite", "") == "a kite"
    planned_before = f"wide shot of the quays, {STYLE}, highly detailed"
    assert compose(planned_before, STYLE) == planned_before, "a prompt holding the look gets it once"
    assert compose(f"  {planned_before} ", STYLE.upper()) == f"  {planned_before} ", "kept to the character"
    assert compose("a tired keeper", "red") == "a tired keeper, red", "whole words only"


def test_without_takes_the_look_out_and_tidies():
    assert without(f"wide shot of the quays, {STYLE}, highly detailed", STYLE) == \
        "wide shot of the quays, highly detailed"
    assert without(f"Tom asleep. Tom: a keeper. Style: {STYLE}.", STYLE) == "Tom asleep. Tom: a keeper."
    assert without(f"{STYLE}, a kite", STYLE) == "a kite"
    assert without("a kite", STYLE) == "a kite"
    assert not carries(without(f"x, {STYLE}", STYLE), STYLE)


def test_resolve_gives_the_shot_its_look():
    shot = Shot(id=1, scene_id="s1", description="d", image_prompt="a kite")
    assert resolve(shot, STYLE).look == STYLE
    own = attrs.evolve(shot, look="black and white, hard noon light")
    assert resolve(own, STYLE).look == own.look
    # Planned with the film's style inside its prompt, then given a look of its own: the old
    # style leaves the prompt (else it would carry both).
    old = attrs.evolve(own, image_prompt=f"a kite, {STYLE}, detailed")
    assert resolve(old, STYLE).image_prompt == "a kite, detailed"
    job = ShotJob(session_id="s", stage="images", shot=resolve(shot, STYLE), attempt=1, work_dir=".",
                  checkpoint={}, cancelled=None, save=lambda d: None)
    assert job.look == STYLE and job.prompt == f"a kite, {STYLE}"


def test_the_storyboard_takes_its_palette_from_the_look_and_its_caption_from_the_prompt(tmp_path):
    gen = StoryboardGenerator(StoryboardOptions(width=320, height=180))
    film = Shot(id=2, scene_id="s1", description="Close-up: Mira at the pier, a lantern",
                image_prompt=KITE, look="deep navy and lantern-gold palette", seed=5)
    other = attrs.evolve(film, look="warm terracotta and teal palette")
    assert hue_gap(sky_hue(gen.draw_plate(film)), sky_hue(gen.draw_plate(other))) > 40
    assert gen.card_text(film).caption == "A red kite over the harbour"  # not the stale description
    assert gen.card_text(attrs.evolve(film, image_prompt="")).caption == film.description
    job = ShotJob(session_id="s", stage="images", shot=film, attempt=1, work_dir=tmp_path,
                  checkpoint={}, cancelled=None, save=lambda d: None)
    assert plate_caption(gen.generate(film, job)) == "A red kite over the harbour"


# -- through the CLI ----------------------------------------------------------------------------

def test_editing_an_image_prompt_keeps_the_films_look(out):
    run_cli(out, "run", IDEA, "--new", *OFFLINE)
    sid = SessionStore(out).ids()[0]
    path = out / "sessions" / sid
    style = json.loads((path / "story.json").read_text())["style"]
    plan = json.loads((path / "shots.json").read_text())["shots"]
    assert style and not any(carries(s["image_prompt"], style) for s in plan), "the look is not in the prompts"
    before, film = files(path), sha256_file(path / "film.mp4")
    hues = [sky_hue(plate(path / f"images/shot_{n:03d}.png")) for n in (1, 2, 3, 4)]

    r = invoke(out, "shots", "edit", sid, "2", "--image-prompt", KITE)
    assert r.exit_code == 0 and "changed image_prompt" in r.output, r.output
    calls = run_cli(out, "resume", sid, *SMALL)

    # Only that shot's image and clip, and the film, are made again.
    assert calls.shots == {"images": [2], "videos": [2]} and calls.film == 1
    after = files(path)
    assert {k for k in after if after[k] != before[k]} == {"images/shot_002.png", "videos/shot_002.mp4"}
    assert sha256_file(path / "film.mp4") != film
    # The edited shot keeps the film's palette: its sky's hue is as near the others' as they
    # are to each other (15 degrees more). A grey-blue frame of the same shot is not.
    edited = sky_hue(plate(path / "images/shot_002.png"))
    unedited = [h for n, h in zip((1, 2, 3, 4), hues) if n != 2]
    spread = max(hue_gap(a, b) for a in unedited for b in unedited)
    tolerance = spread + 15
    assert min(hue_gap(edited, h) for h in unedited) <= tolerance, (edited, unedited)
    shot = next(s for s in SessionStore(out).load(sid).read_step_output("shots").shots if s.id == 2)
    grey_blue = StoryboardGenerator(StoryboardOptions(width=320, height=180)).draw_plate(
        attrs.evolve(shot, look="slate grey and steel blue palette"))
    assert min(hue_gap(sky_hue(grey_blue), h) for h in unedited) > tolerance, "the measure could not tell"
    # The card shows what the prompt asks for (the renderer draws the caption its plate records).
    assert plate_caption(path / "images/shot_002.png") == "A red kite over the harbour"
    assert plate_caption(path / "images/shot_001.png") != plate_caption(path / "images/shot_002.png")

    # Resuming again makes nothing.
    assert run_cli(out, "resume", sid, *SMALL).shots == {}


def test_a_look_edit_changes_one_shot_or_the_film(out):
    run_cli(out, "run", IDEA, "--new", *OFFLINE)
    sid = SessionStore(out).ids()[0]
    path = out / "sessions" / sid
    hue1 = sky_hue(plate(path / "images/shot_001.png"))

    r = invoke(out, "shots", "edit", sid, "3", "--look", "deep navy and cobalt palette, night")
    assert r.exit_code == 0, r.output
    calls = run_cli(out, "resume", sid, *SMALL)
    assert calls.shots == {"images": [3], "videos": [3]} and calls.film == 1
    assert hue_gap(sky_hue(plate(path / "images/shot_003.png")), hue1) > 60
    assert hue_gap(sky_hue(plate(path / "images/shot_003.png")), 225) < 40  # navy and cobalt are blue

    r = invoke(out, "shots", "style", sid, "pine green and frost white palette, telephoto lens")
    assert r.exit_code == 0 and "3 shot(s) take it" in r.output, r.output
    assert invoke(out, "shots", "style", sid).output.startswith("pine green")
    calls = run_cli(out, "resume", sid, *SMALL)
    assert calls.shots == {"images": [1, 2, 4], "videos": [1, 2, 4]}, "shot 3 keeps its own look"
    assert hue_gap(sky_hue(plate(path / "images/shot_001.png")), hue1) > 40

    r = invoke(out, "shots", "edit", sid, "3", "--look", "")
    assert r.exit_code == 0, r.output
    assert run_cli(out, "resume", sid, *SMALL).shots == {"images": [3], "videos": [3]}
    assert hue_gap(sky_hue(plate(path / "images/shot_003.png")),
                   sky_hue(plate(path / "images/shot_001.png"))) < 40, "back to the film's look"


def _planned_before(monkeypatch):
    """Plan as reelforge did before looks were kept apart: the story's style inside each image
    prompt, before "highly detailed, cinematic composition"; no ``look`` in shots.json."""
    from reelforge.plugins.story_llm import offline_shots

    real = offline_shots._shot

    def old_shot(story, *args, **kwargs):
        shot = real(story, *args, **kwargs)
        head, tail = shot.image_prompt.rsplit(", highly detailed", 1)
        return attrs.evolve(shot, image_prompt=f"{head}, {story.style}, highly detailed{tail}")

    monkeypatch.setattr(offline_shots, "_shot", old_shot)


def _old_image_fingerprint(shot: dict, options: dict) -> str:
    """How images were fingerprinted before looks were kept apart (the storyboard's)."""
    inner = fingerprint(stage="images", prompt=shot["image_prompt"], negative=shot["negative_prompt"],
                        seed=shot["seed"], backend="storyboard", options=options)
    extra = {f: shot[f] for f in ("description", "characters", "scene_id", "duration_s")}
    extra["characters"] = tuple(extra["characters"])
    return fingerprint(stage="images", shot_fields=extra, inner=inner)


def test_a_session_planned_with_the_style_in_its_prompts_resumes_without_remaking(out, monkeypatch):
    from reelforge.plugins.image_gen.storyboard import StoryboardGenerator

    with monkeypatch.context() as m:
        _planned_before(m)
        m.setattr(StoryboardGenerator, "takes_references", False)  # made before the cast existed
        run_cli(out, "run", IDEA, "--new", *OFFLINE)
    sid = SessionStore(out).ids()[0]
    path = out / "sessions" / sid
    meta_path = path / f"{sid}_meta.json"
    meta_file = json.loads(meta_path.read_text())
    meta_file.pop("cast", None)  # a meta written before the cast step has no cast
    meta_path.write_text(json.dumps(meta_file, indent=2))
    style = json.loads((path / "story.json").read_text())["style"]
    data = json.loads((path / "shots.json").read_text())
    for s in data["shots"]:  # shots.json as it was written then: no look
        assert carries(s["image_prompt"], style)
        del s["look"]
    (path / "shots.json").write_text(json.dumps(data, indent=2))
    meta = SessionStore(out).load(sid).meta
    options = {"width": 320, "height": 180}
    for s in data["shots"]:
        assert meta.shot(s["id"]).image.fingerprint == _old_image_fingerprint(s, options), \
            "the images carry the fingerprints the code before this change gave them"
    before = files(path)

    assert run_cli(out, "resume", sid, *SMALL).shots == {}, "nothing is made again"
    assert files(path) == before

    # An edit of one old shot's prompt: that shot only, and it keeps the film's look.
    hues = {n: sky_hue(plate(path / f"images/shot_{n:03d}.png")) for n in (1, 3, 4)}
    assert invoke(out, "shots", "edit", sid, "2", "--image-prompt", KITE).exit_code == 0
    calls = run_cli(out, "resume", sid, *SMALL)
    assert calls.shots == {"images": [2], "videos": [2]}
    spread = max(hue_gap(a, b) for a in hues.values() for b in hues.values())
    assert min(hue_gap(sky_hue(plate(path / "images/shot_002.png")), h) for h in hues.values()) <= spread + 15
    # A look of its own for an old shot replaces the style its prompt holds (not both).
    assert invoke(out, "shots", "edit", sid, "4", "--look", "deep navy and cobalt palette").exit_code == 0
    assert run_cli(out, "resume", sid, *SMALL).shots == {"images": [4], "videos": [4]}
    assert hue_gap(sky_hue(plate(path / "images/shot_004.png")), 225) < 40
    # The same style again changes nothing (an old prompt keeps the style it holds).
    plan_before = (path / "shots.json").read_bytes()
    r = invoke(out, "shots", "style", sid, f" {style} ")
    assert r.exit_code == 0 and "No change." in r.output and (path / "shots.json").read_bytes() == plan_before
    # The film's style changed: the old one leaves the prompts that hold it.
    assert invoke(out, "shots", "style", sid, "pine green and frost white palette").exit_code == 0
    plan = json.loads((path / "shots.json").read_text())["shots"]
    assert not any(carries(s["image_prompt"], style) for s in plan)
    assert run_cli(out, "resume", sid, *SMALL).shots == {"images": [1, 2, 3], "videos": [1, 2, 3]}


def test_bad_look_edits_are_refused(out):
    run_cli(out, "run", IDEA, "--new", *OFFLINE)
    sid = SessionStore(out).ids()[0]
    r = invoke(out, "shots", "edit", sid, "2", "--look", "x" * 5000)
    assert r.exit_code != 0 and "look" in r.output
    r = invoke(out, "shots", "style", sid, "  ")
    assert r.exit_code == 2 and "style" in r.output


@pytest.mark.parametrize("prompt", [KITE, f"{KITE}, {STYLE}"])
def test_the_comfyui_prompt_is_subject_and_look(prompt):
    from reelforge.plugins.comfy_render.prompts import ShotPrompts

    class Template:
        defaults: dict = {}
        reference_slots: tuple = ()  # a template without reference images

    class Options:
        width = height = fps = None

    shot = resolve(Shot(id=1, scene_id="s1", description="d", image_prompt=prompt), STYLE)
    job = ShotJob(session_id="s", stage="images", shot=shot, attempt=1, work_dir=".",
                  checkpoint={}, cancelled=None, save=lambda d: None)
    values = ShotPrompts(Template(), Options(), kind="image").values(shot, job, None)
    assert values["prompt"] == job.prompt and values["prompt"].count(STYLE) == 1
