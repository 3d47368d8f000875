"""How one shot's plate looks: its random stream, the film's palette, the setting, framing
and time of day the shot's words name, and the colours that follow from them (sky, ground
at a depth, accent, figure). Drawing is left to :mod:`.backdrop` and :mod:`.figures`."""

from __future__ import annotations

import hashlib
import random

from reelforge.plugins.image_gen.storyboard.palette import RGB, _mix, _rgb, _shade, palette_for
from reelforge.plugins.image_gen.storyboard.scene import setting, shot_type
from reelforge.records import Shot


class Look:
    """The choices one shot's plate is painted from; every drawing routine takes it, and
    draws from its ``rng`` in the order the plate is painted (so the same shot always
    gives the same pixels)."""

    def __init__(self, shot: Shot, size: tuple[int, int]):
        self.shot = shot
        self.w, self.h = size
        digest = hashlib.sha256(f"{shot.image_prompt}\x1f{shot.seed}".encode("utf-8")).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        # The film's palette comes from the look the shot is made with (the runner fills it
        # in: the story's style, or the shot's own); a bare shot without one, from its prompt.
        self.palette = palette_for(shot.look if shot.look.strip() else shot.image_prompt)
        self.where = setting(shot)
        self.kind = shot_type(shot)
        self.night = "night" in self.where or ("space" in self.where and "interior" not in self.where)
        self.storm = "storm" in self.where
        self.time = "night" if self.night else "dusk" if "dusk" in self.where else "dawn" if "dawn" in self.where else "day"

    # horizon height per framing: aerial looks down (high horizon), low angle looks up.
    def horizon(self) -> int:
        # (The card's bands cover the top 8 % and bottom 21 %: keep what matters between.)
        frac = {"aerial": 0.3, "low": 0.74, "silhouette": 0.7, "closeup": 0.62, "medium": 0.6,
                "detail": 0.55, "wide": 0.56}[self.kind]
        return int(self.h * (frac + self.rng.uniform(-0.03, 0.03)))

    def colours(self):
        p = self.palette
        ph, ps, pv = p.hsv("primary")
        sh, ss, sv = p.hsv("secondary")
        if self.time == "night":
            top, bottom = _rgb(ph, min(1, ps * 0.9 + 0.2), 0.12), _rgb(ph, ps * 0.8, 0.32)
        elif self.time == "dusk":
            top, bottom = _rgb(ph, ps * 0.7, 0.45), _mix(_rgb(sh, ss, 0.95), (255, 140, 70), 0.35)
        elif self.time == "dawn":
            top, bottom = _rgb(ph, ps * 0.5, 0.7), _mix(_rgb(sh, ss * 0.6, 1.0), (255, 200, 170), 0.3)
        else:
            top, bottom = _rgb(ph, ps * 0.75, min(1.0, 0.45 + pv * 0.5)), _rgb(sh, ss * 0.35, 0.95)
        if self.storm:
            top, bottom = _mix(top, (40, 44, 52), 0.6), _mix(bottom, (90, 96, 104), 0.55)
        if self.kind == "silhouette":
            bottom = _mix(_rgb(sh, ss, 1.0), (255, 200, 120), 0.4)
        return top, bottom

    def land(self, depth: float) -> RGB:
        """Ground colour at ``depth`` (0 far, 1 near): the primary hue, darker when near."""
        ph, ps, _ = self.palette.hsv("primary")
        v = (0.55 - 0.38 * depth) * (0.45 if self.night else 1.0) * (0.75 if self.storm else 1.0)
        if self.kind == "silhouette":
            v *= 0.35
        return _rgb(ph + 0.03 * depth, min(1.0, ps * 0.6 + 0.15 + 0.15 * depth), v)

    def accent(self, bright: float = 1.0) -> RGB:
        sh, ss, sv = self.palette.hsv("secondary")
        return _rgb(sh, ss, min(1.0, max(0.55, sv) * bright))

    def figure_colour(self) -> RGB:
        return self.land(1.0) if self.kind == "silhouette" else _shade(self.land(0.9), v=0.6)

