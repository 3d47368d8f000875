"""The ledger, through whole sessions run with reelforge's fake backends (the
reelforge_fakes and reelforge_run fixtures come with reelforge, through pytest11)."""

from reelforge import StageError

from reelforge_ledger import ledger


def test_one_row_per_shot_per_stage(reelforge_fakes, reelforge_run):
    result = reelforge_run("A lighthouse in a storm", backends=reelforge_fakes.backends,
                           plugins=[ledger])
    assert result.ok
    rows = ledger.read_ledger(result.path / "ledger.csv")
    assert sorted((r["stage"], r["shot"]) for r in rows) == [
        ("images", "1"), ("images", "2"), ("images", "3"),
        ("videos", "1"), ("videos", "2"), ("videos", "3")]
    assert {r["outcome"] for r in rows} == {"done"}
    assert {r["attempts"] for r in rows} == {"1"}
    assert all(float(r["seconds"]) >= 0 for r in rows)
    assert {r["backend"] for r in rows} == {"fake"}


def test_failure_then_resume_appends(reelforge_fakes, reelforge_run):
    reelforge_fakes.image.fail(2, StageError("the GPU caught fire"))
    first = reelforge_run("An idea", backends=reelforge_fakes.backends, plugins=[ledger])
    assert not first.ok
    second = reelforge_run(backends=reelforge_fakes.backends, plugins=[ledger],
                           resume=first.session_id)
    assert second.ok
    rows = ledger.read_ledger(first.path / "ledger.csv")
    outcomes = [(r["stage"], r["shot"], r["outcome"], r["attempts"]) for r in rows]
    # first run: shot 2's image failed, so its clip was not tried
    assert sorted(outcomes[:5]) == [
        ("images", "1", "done", "1"),
        ("images", "2", "failed", "1"),
        ("images", "3", "done", "1"),
        ("videos", "1", "done", "1"),
        ("videos", "3", "done", "1"),
    ]
    # the resumed run appends: done shots skipped, shot 2 made on its second attempt
    assert sorted(outcomes[5:]) == [
        ("images", "1", "skipped:done", "1"),
        ("images", "2", "done", "2"),
        ("images", "3", "skipped:done", "1"),
        ("videos", "1", "skipped:done", "1"),
        ("videos", "2", "done", "1"),
        ("videos", "3", "skipped:done", "1"),
    ]
    assert len({r["run_started"] for r in rows[:5]}) == 1
    [failed] = [r for r in rows if r["outcome"] == "failed"]
    assert failed["error"] == "StageError: the GPU caught fire"
    assert failed["backend"] == "fake"


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "ledger.csv"
    ledger.append_row(path, {"stage": "images", "shot": 1, "outcome": "done"})
    with open(path, "ab") as fh:
        fh.write(b"2026-01-01,images,2,do")  # a crash mid-append
    ledger.append_row(path, {"stage": "images", "shot": 2, "outcome": "done"})
    rows = ledger.read_ledger(path)
    assert [(r["shot"], r["outcome"]) for r in rows] == [("1", "done"), ("2", "done")]
    assert path.read_text().count("run_started") == 1
