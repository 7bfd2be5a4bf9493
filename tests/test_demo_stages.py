"""The demo's stage runner: finished stages are reused, unfinished ones run, records are written atomically."""

import json

from salad_demo.stages import StageRunner


def test_finished_stage_is_reused_not_rerun(tmp_path):
    calls = []
    runner = StageRunner(tmp_path, log=lambda _: None)
    assert runner.run("a", lambda: calls.append(1) or {"x": 1}) == {"x": 1}
    again = StageRunner(tmp_path, log=lambda _: None)
    assert again.run("a", lambda: calls.append(2) or {"x": 2}) == {"x": 1}
    assert calls == [1]


def test_failed_stage_leaves_no_record_and_runs_again(tmp_path):
    runner = StageRunner(tmp_path, log=lambda _: None)

    def boom():
        raise RuntimeError("killed")

    try:
        runner.run("b", boom)
    except RuntimeError:
        pass
    assert not runner.done("b")
    assert list((tmp_path / "stages").iterdir()) == []
    assert runner.run("b", lambda: 5) == 5


def test_timings_list_each_stage_with_seconds_and_memory(tmp_path):
    runner = StageRunner(tmp_path, log=lambda _: None)
    runner.run("first", lambda: 1)
    runner.run("second", lambda: 2)
    timings = runner.timings()
    assert {t["stage"] for t in timings} == {"first", "second"}
    assert all(t["seconds"] >= 0 and t["peak_rss_gib"] > 0 for t in timings)
    record = json.loads((tmp_path / "stages" / "first.json").read_text())
    assert record["result"] == 1


def test_a_run_folder_refuses_other_settings_but_not_a_later_field_at_its_default(tmp_path):
    import dataclasses

    import pytest

    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    preset = get_preset("smoke")
    DemoPipeline(preset, tmp_path)
    stored = json.loads((tmp_path / "preset.json").read_text())
    added = next(f.name for f in dataclasses.fields(preset) if f.default is not dataclasses.MISSING)
    del stored[added]  # as written before the field existed
    (tmp_path / "preset.json").write_text(json.dumps(stored))
    DemoPipeline(get_preset("smoke"), tmp_path)
    with pytest.raises(ValueError, match="other settings.*stage1_steps"):
        DemoPipeline(dataclasses.replace(preset, stage1_steps=preset.stage1_steps + 1), tmp_path)


def _finished_stage1(tmp_path, preset):
    from salad_demo.pipeline import DemoPipeline

    pipeline = DemoPipeline(preset, tmp_path)
    pre_decay = tmp_path / "stage1" / "checkpoint-pre-decay"
    pre_decay.mkdir(parents=True)
    (pre_decay / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    pipeline.runner.run("stage1", lambda: {"output_dir": str(tmp_path / "stage1"), "steps": 3,
                                           "pre_decay": str(pre_decay)})
    return pipeline


def test_stage2_starts_at_the_pre_decay_checkpoint_or_at_stage1s_last_one(tmp_path):
    import dataclasses

    import pytest

    from salad_demo.presets import get_preset

    preset = get_preset("smoke")
    assert preset.stage2_start == "pre_decay"
    start, step = _finished_stage1(tmp_path / "a", preset).stage2_start()
    assert (start, step) == (str(tmp_path / "a" / "stage1" / "checkpoint-pre-decay"), 2)
    final = dataclasses.replace(preset, stage2_start="final")
    assert _finished_stage1(tmp_path / "b", final).stage2_start() == (str(tmp_path / "b" / "stage1"), 3)
    with pytest.raises(ValueError, match="stage2_start must be one of"):
        get_preset("smoke", {"stage2_start": "latest"})


def test_stage2_draws_its_own_seed_when_asked(tmp_path):
    import pytest

    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    assert DemoPipeline(get_preset("smoke"), tmp_path / "a").stage2_seed == get_preset("smoke").seed
    assert DemoPipeline(get_preset("smoke", {"stage2_seed": 7}), tmp_path / "b").stage2_seed == 7
    for bad in (-1, 1.5, "one", True):
        with pytest.raises(ValueError, match="stage2_seed must be None or an integer"):
            get_preset("smoke", {"stage2_seed": bad})


def test_the_demo_speaks_only_scored_questions_never_the_written_shot_pool(tmp_path):
    from salad_demo.demo_eval import DemoEvaluator
    from salad_demo.presets import get_preset

    preset = get_preset("smoke")
    items = [{"id": f"q{i}", "question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2}
             for i in range(preset.fewshot_pool_size + 3)]
    evaluator = DemoEvaluator({}, tmp_path, preset)
    spoken = [(s.voices, item["id"]) for s, item in evaluator._scored_clips({"parity": items})]
    scored = [item["id"] for item in items[preset.fewshot_pool_size:]]
    assert spoken == [(preset.seen_voice, i) for i in scored] + [(preset.unseen_voice, i) for i in scored]


FAKE_STAGE = """
import json, os, sys, time
from salad_demo.stages import StageRunner
root, stage, threads, needs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
runner = StageRunner(root, log=lambda _: None)
assert all(runner.done(n) for n in needs.get(stage, [])), f"{stage} started before its needs"
with open(os.path.join(root, "events.txt"), "a") as log:
    log.write(f"start {stage} {threads} {os.environ['OMP_NUM_THREADS']}\\n")
if stage == "broken":
    print("something went wrong in broken"); sys.exit(3)
deadline = time.time() + 20  # b and c each wait for the other to start: they overlap, or time out apart
while stage in ("b", "c") and time.time() < deadline and not all(
        f"start {s} " in open(os.path.join(root, "events.txt")).read() for s in ("b", "c")):
    time.sleep(0.05)
runner.run(stage, lambda: stage)
with open(os.path.join(root, "events.txt"), "a") as log:
    log.write(f"end {stage}\\n")
"""


def parallel(tmp_path, needs, jobs=2, cores=2):
    import sys

    from salad_demo.stages import ParallelStages

    command = lambda stage, threads: [sys.executable, "-c", FAKE_STAGE, str(tmp_path), stage, str(threads),
                                      json.dumps(needs)]
    return ParallelStages(StageRunner(tmp_path, log=lambda _: None), needs, command, jobs=jobs, cores=cores,
                          poll_seconds=0.05)


def events(tmp_path):
    return [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]


def test_parallel_stages_overlap_independent_stages_and_follow_their_needs(tmp_path):
    needs = {"b": ["a"], "c": ["a"], "d": ["b", "c"]}
    parallel(tmp_path, needs).run(["a", "b", "c", "d"])
    log = events(tmp_path)
    running, most = set(), 0
    for event in log:
        running.add(event[1]) if event[0] == "start" else running.discard(event[1])
        most = max(most, len(running))
    assert most == 2  # b and c side by side, never more than two
    threads = {e[1]: int(e[2]) for e in log if e[0] == "start"}
    assert threads == {"a": 2, "b": 1, "c": 1, "d": 2}  # a stage alone gets both cores
    assert all(e[2] == e[3] for e in log if e[0] == "start")  # OMP threads follow
    assert StageRunner(tmp_path).done("d")
    parallel(tmp_path, needs).run(["a", "b", "c", "d"])  # everything done: no child starts
    assert len(events(tmp_path)) == len(log)


def test_stages_started_together_share_the_cores_evenly(tmp_path):
    parallel(tmp_path, {"b": ["a"], "c": ["a"]}, jobs=3, cores=6).run(["a", "b", "c"])
    assert {e[1]: int(e[2]) for e in events(tmp_path) if e[0] == "start"} == {"a": 6, "b": 3, "c": 3}


def test_parallel_stages_report_a_failure_with_its_log_and_keep_the_other_stages_work(tmp_path):
    import pytest

    needs = {"after": ["broken"]}
    with pytest.raises(RuntimeError, match="(?s)broken failed.*something went wrong in broken"):
        parallel(tmp_path, needs).run(["broken", "fine", "after"])
    runner = StageRunner(tmp_path)
    assert runner.done("fine") and not runner.done("broken") and not runner.done("after")
    with pytest.raises(ValueError, match="needs \\['x'\\]"):
        parallel(tmp_path, {"y": ["x"]}).run(["y"])


def test_busy_seconds_count_overlapping_stages_once_and_skip_pauses():
    from salad_demo.stages import busy_seconds

    records = [{"seconds": 10.0, "finished_at": "2026-01-01T00:00:10"},
               {"seconds": 5.0, "finished_at": "2026-01-01T00:00:08"},   # inside the first
               {"seconds": 10.0, "finished_at": "2026-01-01T00:00:15"},  # overlaps it by 5 s
               {"seconds": 2.0, "finished_at": "2026-01-01T01:00:00"}]   # after a pause of an hour
    assert busy_seconds(records) == 17.0
