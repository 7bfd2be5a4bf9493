"""selection.steps.StepCache: one folder of step outputs keyed by their settings; a step runs once per setting."""

import torch

from selection.steps import StepCache


def test_a_step_runs_once_per_setting_and_reads_back_the_same_value(tmp_path):
    cache, calls = StepCache(tmp_path), []

    def compute():
        calls.append(1)
        return {"counts": [1, 2], "by_cluster": {"0": 0.5}}

    first = cache.run("sample", {"gamma": 5.0}, compute)
    again = cache.run("sample", {"gamma": 5.0}, compute)
    other = cache.run("sample", {"gamma": 0.0}, compute)
    assert len(calls) == 2 and not first.cached and again.cached and not other.cached
    assert again.value == first.value == {"counts": [1, 2], "by_cluster": {"0": 0.5}}
    assert first.key == again.key != other.key and again.seconds == first.seconds


def test_an_output_without_its_record_is_computed_again(tmp_path):
    cache = StepCache(tmp_path)
    result = cache.run("cluster", {"k": 2}, lambda: torch.arange(4), kind="pickle")
    data_path, record_path = cache.paths(result.key, "pickle")
    assert torch.equal(cache.run("cluster", {"k": 2}, lambda: None, kind="pickle").value, torch.arange(4))
    record_path.unlink()  # killed after writing the output, before marking it done
    assert cache.run("cluster", {"k": 2}, lambda: torch.ones(2), kind="pickle").value.tolist() == [1.0, 1.0]
    assert data_path.is_file() and record_path.is_file()
