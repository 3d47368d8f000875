"""How well the offline planner keeps to its idea, over the ideas of tests/test_offline_ideas.py.

Prints, per check, on how many ideas the default 7-shot plan passes it (issue 19 item 1).
To compare with an older planner, check out its plugins/story_llm/offline*.py and run again:

    python bench/offline_ideas.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_offline_ideas import IDEAS, STOCK, _everything, _has, _words, plan


def main() -> None:
    passed = {"lead is the subject": 0, "action in logline": 0, "action in first and last line": 0,
              "action in 3+ lines": 0, "action shown in 2+ shots": 0, "place in every scene": 0,
              "time in every description": 0, "no stock setting": 0, "subject not its own goal": 0}
    with_place = with_time = 0
    for param in IDEAS:
        case = param.values[0]
        story, scenes, shots = plan(case["text"])
        lines = [s.narration for s in shots.shots]
        descriptions = [s.description for s in shots.shots]
        who = case["who"] if isinstance(case["who"], str) else case["who"][0]
        lead = story.characters[0]
        passed["lead is the subject"] += who.lower() in lead.description.lower() or lead.name in case["names"]
        passed["action in logline"] += _has(story.logline, case["verbs"])
        passed["action in first and last line"] += _has(lines[0], case["verbs"]) and _has(lines[-1], case["verbs"])
        passed["action in 3+ lines"] += sum(_has(line, case["verbs"]) for line in lines) >= 3
        passed["action shown in 2+ shots"] += sum(_has(d, case["verbs"]) for d in descriptions) >= 2
        if case["places"]:
            with_place += 1
            passed["place in every scene"] += all(p in s.setting for p in case["places"] for s in scenes.scenes)
        if case["time"]:
            with_time += 1
            passed["time in every description"] += all(case["time"] in d for d in descriptions)
        stray = (_words(_everything(story, scenes, shots)) & STOCK) - _words(case["text"]) - case["allowed"]
        passed["no stock setting"] += not stray
        goal = story.logline.lower().split("hold on to", 1)
        passed["subject not its own goal"] += len(goal) == 1 or who.split()[-1].lower() not in goal[1]
    for check, count in passed.items():
        out_of = with_place if check.startswith("place") else with_time if check.startswith("time") else len(IDEAS)
        print(f"{check:32s} {count:2d}/{out_of}")


if __name__ == "__main__":
    main()
