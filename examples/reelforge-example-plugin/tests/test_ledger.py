from framework import StageError
from framework.testing import fake_backends, run_session

from reelforge_ledger import ledger


def test_one_row_per_shot_per_stage(tmp_path):
    with fake_backends(shots=3) as fakes:
        result = run_session(tmp_path, "A lighthouse in a storm", backends=fakes.backends,
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


def test_failure_then_resume_appends(tmp_path):
    with fake_backends(shots=2) as fakes:
        fakes.image.fail(2, StageError("the GPU caught fire"))
        first = run_session(tmp_path, "An idea", backends=fakes.backends, plugins=[ledger])
        assert not first.ok
        second = run_session(tmp_path, "", backends=fakes.backends, plugins=[ledger],
                             resume=first.session_id)
    assert second.ok
    rows = ledger.read_ledger(first.path / "ledger.csv")
    runs = sorted({r["run_started"] for r in rows})
    assert len(runs) in (1, 2)  # two runs may start within the same second
    outcomes = [(r["stage"], r["shot"], r["outcome"], r["attempts"]) for r in rows]
    # first run: shot 1 done, shot 2's image failed; second run: shot 1 skipped, shot 2 made
    assert sorted(outcomes[:3]) == [
        ("images", "1", "done", "1"),
        ("images", "2", "failed", "1"),
        ("videos", "1", "done", "1"),
    ]
    assert sorted(outcomes[3:]) == [
        ("images", "1", "skipped:done", "1"),
        ("images", "2", "done", "2"),
        ("videos", "1", "skipped:done", "1"),
        ("videos", "2", "done", "1"),
    ]
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
