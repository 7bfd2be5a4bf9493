"""salad-synth: Hub-ready folders that load_dataset reads, spans, resume after a kill, overwrite safety, CER."""

import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from datasets import Audio, load_dataset

from datasets_scripts import synth as synth_module
from datasets_scripts.asr_check import cer_by_group, character_error_rate
from spans import load_span_documents
from datasets_scripts.synth import finalize_rows
from datasets_scripts.synth_cli import main
from datasets_scripts.synth_writer import SynthConfig, completed_summary, write_span_dataset
from datasets_scripts.tts import VoicePool

TEXTS = ["How many legs do horses have?", "What is the capital of France?", "Water boils at one hundred degrees.",
         "The moon orbits the earth.", "Cats like to sleep in the sun.", "Seven is a prime number.",
         "Bread is made from flour."]
POOL = "flite:slt,flite:awb"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _load(folder):
    ds = load_dataset(str(folder), split="train", cache_dir=str(folder.parent / "hf-cache"))
    assert isinstance(ds.features["audio"], Audio)
    return ds.cast_column("audio", Audio(decode=False))


def test_cli_writes_a_folder_load_dataset_reads(tmp_path, capsys):
    rows = [{"id": f"r{i}", "text": t, "topic": "quiz"} for i, t in enumerate(TEXTS[:3])]
    rows += [{"id": "bad1", "text": "?!"}, {"id": "bad2", "text": "Доброе утро, друзья"}, {"id": "bad3", "text": ""}]
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["--input", str(source), "--output", str(tmp_path / "out"), "--tts", POOL, "--quiet",
                 "--source-license", "cc-by-4.0"]) == 0
    summary = capsys.readouterr().out
    assert "3 rows" in summary and "x real time" in summary and "unspeakable:no_letters: 1" in summary
    ds = _load(tmp_path / "out")
    assert ds.column_names == ["id", "doc_id", "span_index", "text", "audio", "backend", "voice", "duration", "cer",
                               "source"]
    assert ds["id"] == ["r0", "r1", "r2"] and ds["text"] == TEXTS[:3]
    for row in ds:
        audio, rate = sf.read(__import__("io").BytesIO(row["audio"]["bytes"]))
        assert rate == 16000 and abs(len(audio) / rate - row["duration"]) < 0.01
        assert row["backend"] == "flite" and row["voice"] in ("slt", "awb")
        assert row["voice"] == VoicePool(POOL).pick(row["id"])[1]
    card = (tmp_path / "out" / "README.md").read_text()
    front = __import__("yaml").safe_load(card.split("---")[1])
    assert front["license"] == "cc-by-4.0" and front["language"] == ["en"]
    assert front["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert front["dataset_info"]["splits"][0]["num_examples"] == 3
    assert {"name": "audio", "dtype": {"audio": {"sampling_rate": 16000}}} in front["dataset_info"]["features"]
    assert "flite:slt,flite:awb" in card and "unspeakable:non_latin_script: 1" in card
    assert "unspeakable:empty: 1" in card


def test_spans_mode_rows_are_contiguous_documents(tmp_path):
    docs = [{"id": "d0", "text": " ".join(TEXTS)}, {"id": "d1", "text": " ".join(TEXTS[::-1] * 2)}]
    pool = VoicePool(POOL)
    write_span_dataset(docs, tmp_path / "spans", pool, SynthConfig(mode="spans", seed=3, progress=False))
    ds = _load(tmp_path / "spans")
    assert ds["doc_id"] == sorted(ds["doc_id"])  # contiguous
    for doc_id in ("d0", "d1"):
        rows = [r for r in ds if r["doc_id"] == doc_id]
        assert [r["span_index"] for r in rows] == list(range(len(rows)))
        assert len({r["voice"] for r in rows if r["voice"]}) == 1  # one voice per document
        assert any(r["audio"] is None for r in rows) and any(r["audio"] is not None for r in rows)
        assert " ".join(r["text"] for r in rows) == next(d["text"] for d in docs if d["id"] == doc_id)
    documents = load_span_documents(tmp_path / "spans")
    assert [d["id"] for d in documents] == ["d0", "d1"]
    span = next(s for s in documents[0]["spans"] if s["audio"] is not None)
    assert span["audio"]["sampling_rate"] == 16000 and span["audio"]["array"].dtype == np.float32


def test_load_span_documents_natural_speech_and_plain_texts(tmp_path):
    clip = {"array": np.zeros(800, np.float32), "sampling_rate": 8000}
    rows = [{"book": "b1", "utt": 1, "transcript": "second", "audio": clip},
            {"book": "b1", "utt": 0, "transcript": "first", "audio": clip},
            {"book": "b2", "utt": 0, "transcript": "other", "audio": clip}]
    from datasets import Dataset

    docs = load_span_documents(Dataset.from_list([{k: v for k, v in r.items() if k != "audio"} for r in rows]),
                               group_column="book", order_column="utt", text_column="transcript")
    assert [[s["text"] for s in d["spans"]] for d in docs] == [["first", "second"], ["other"]]
    docs = load_span_documents(["Hello there.", "Good morning."], voices=VoicePool("flite"))
    assert docs[0]["id"] == "0" and docs[0]["spans"][0]["audio"]["sampling_rate"] == 16000
    assert load_span_documents(["Only text."])[0]["spans"] == [{"text": "Only text.", "audio": None}]
    with pytest.raises(ValueError, match="not contiguous"):
        load_span_documents(Dataset.from_list([{"doc_id": "a", "span_index": 0, "text": "x"},
                                               {"doc_id": "b", "span_index": 0, "text": "y"},
                                               {"doc_id": "a", "span_index": 1, "text": "z"}]))


def test_kill_and_resume_gives_each_row_exactly_once(tmp_path, monkeypatch):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    pool, out = VoicePool(POOL), tmp_path / "out"
    real_build, calls = synth_module.build_rows, Counter()

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # "killed" while synthesizing the third chunk
        return real_build(*args, **kwargs)

    monkeypatch.setattr(synth_module, "build_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_span_dataset(rows, out, pool, SynthConfig(chunk_size=2, progress=False))
    assert sorted(p.name for p in (out / "data").glob("*.parquet")) == [
        "train-00000-of-00001-00000.parquet", "train-00000-of-00001-00001.parquet"]
    (out / "data" / "train-00000-of-00001-00002.parquet").write_bytes(b"half-written part without a record")
    (out / "data" / ".train-00000-of-00001-00003.parquet.tmp-99").write_bytes(b"tmp of a killed write")
    calls.clear()
    monkeypatch.setattr(synth_module, "build_rows", lambda *a, **k: (calls.update(["n"]), real_build(*a, **k))[1])
    summary = write_span_dataset(rows, out, pool, SynthConfig(chunk_size=2, progress=False))
    assert calls["n"] == 3 and summary["chunks_resumed"] == 2  # rows 5-7 only: done chunks not re-synthesized
    ids = _load(out)["id"]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids)) == 7


def test_finished_output_is_never_silently_overwritten(tmp_path):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS[:2])]
    pool, out = VoicePool(POOL), tmp_path / "out"
    write_span_dataset(rows, out, pool, SynthConfig(progress=False))
    with pytest.raises(ValueError, match="already holds the finished run"):
        write_span_dataset(rows, out, pool, SynthConfig(progress=False))
    with pytest.raises(ValueError, match="different settings.*seed"):
        write_span_dataset(rows, out, pool, SynthConfig(seed=5, progress=False))
    assert completed_summary(rows, out, pool, SynthConfig(seed=5)) is None  # another run's folder
    summary = write_span_dataset(rows, out, pool, SynthConfig(seed=5, overwrite=True, progress=False))
    assert summary["rows_written_now"] == 2 and len(_load(out)) == 2
    assert completed_summary(rows, out, pool, SynthConfig(seed=5, num_proc=2)) == summary  # volatile: num_proc
    assert completed_summary(rows[:1], out, pool, SynthConfig(seed=5)) is None  # other inputs
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no salad-synth run"):
        write_span_dataset(rows, tmp_path / "other", pool, SynthConfig(progress=False))


def test_an_input_edited_in_place_is_refused_not_mixed(tmp_path, monkeypatch):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS[:4])]
    pool, out = VoicePool(POOL), tmp_path / "out"
    real_build, calls = synth_module.build_rows, Counter()

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed in the second chunk
        return real_build(*args, **kwargs)

    monkeypatch.setattr(synth_module, "build_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_span_dataset(rows, out, pool, SynthConfig(chunk_size=2, progress=False))
    monkeypatch.setattr(synth_module, "build_rows", real_build)
    edited = [dict(r, text=r["text"].upper()) for r in rows]  # same ids, same count, new content
    with pytest.raises(ValueError, match="different input .*content hash changed"):
        write_span_dataset(edited, out, pool, SynthConfig(chunk_size=2, progress=False))
    write_span_dataset(edited, out, pool, SynthConfig(chunk_size=2, overwrite=True, progress=False))
    assert sorted(_load(out)["text"]) == sorted(r["text"] for r in edited)


def test_shards_and_worker_processes_cover_every_row_once(tmp_path):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    pool, out = VoicePool(POOL), tmp_path / "out"
    for shard in range(3):
        config = SynthConfig(num_shards=3, shard_index=shard, num_proc=2 if shard == 0 else 1, progress=False)
        write_span_dataset(rows, out, pool, config)
    ds = _load(out)
    assert sorted(ds["id"]) == sorted(r["id"] for r in rows)
    card = (out / "README.md").read_text()
    assert "00000-of-00003, 00001-of-00003, 00002-of-00003" in card and "| rows | 7 |" in card


def test_bad_cli_inputs(tmp_path, capsys):
    source = _write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "body": "hi"}])
    assert main(["--input", str(source), "--output", str(tmp_path / "o"), "--tts", "flite"]) == 2
    assert "no text column 'text'" in capsys.readouterr().err
    assert main(["--input", str(source), "--text-column", "body", "--output", str(tmp_path / "o"),
                 "--tts", "flite:nobody"]) == 2
    assert "Unknown flite voice 'nobody'" in capsys.readouterr().err
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "text": "hi"}, {"id": "a", "text": "ho"}])
    assert main(["--input", str(dup), "--output", str(tmp_path / "o2"), "--tts", "flite"]) == 2
    assert "unique" in capsys.readouterr().err


class _FakeTranscriber:
    """Returns fixed transcripts so the CER bookkeeping is tested without a Whisper model."""

    def __init__(self, transcripts):
        self.transcripts = transcripts

    def cer(self, clips, references):
        return [character_error_rate(r, self.transcripts[r]) for r in references]


def test_cer_filter_drops_rows_and_keeps_spans_as_text():
    rows = [{"id": "a", "doc_id": "a", "span_index": 0, "text": "Four legs.", "audio_array": np.zeros(1600)},
            {"id": "b", "doc_id": "b", "span_index": 0, "text": "Paris is big.", "audio_array": np.zeros(1600)}]
    fake = _FakeTranscriber({"Four legs.": "4 legs", "Paris is big.": "bear is fig"})
    kept, skipped, as_text = finalize_rows([dict(r) for r in rows], transcriber=fake, max_cer=0.1)
    assert [r["id"] for r in kept] == ["a"] and kept[0]["cer"] == 0.0  # normalizer: "four" == "4"
    assert skipped == [{"id": "b", "reason": "cer_above_max"}] and as_text == 0
    kept, skipped, as_text = finalize_rows([dict(r) for r in rows], mode="spans", transcriber=fake, max_cer=0.1)
    assert len(kept) == 2 and kept[1]["audio"] is None and as_text == 1 and not skipped
    groups = cer_by_group([{"cluster": 0, "text": "x", "cer": 0.0}, {"cluster": 0, "text": "x", "cer": 0.5},
                           {"cluster": 1, "text": "Four legs.", "audio": {"array": np.zeros(1600),
                                                                          "sampling_rate": 16000}}],
                          "cluster", transcriber=fake)
    assert groups == {0: {"cer": 0.25, "count": 2}, 1: {"cer": 0.0, "count": 1}}


@pytest.mark.assets
def test_cer_check_with_the_embedded_whisper(tmp_path, capsys):
    from salad_demo.assets import cache_root

    whisper = cache_root() / "whisper-tiny.en"
    if not (whisper / "model.safetensors").exists():
        pytest.skip("embedded Whisper tiny.en not prepared (make assets)")
    source = _write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "How many legs do horses have?"},
                                                  {"id": "b", "text": "What is the capital of France?"}])
    assert main(["--input", str(source), "--output", str(tmp_path / "out"), "--tts", "flite:slt", "--quiet",
                 "--cer-check", str(whisper), "--max-cer", "0.5"]) == 0
    ds = _load(tmp_path / "out")
    assert len(ds) == 2 and all(c is not None and c <= 0.2 for c in ds["cer"]), ds["cer"]
    assert "mean CER" in capsys.readouterr().out and str(whisper) in (tmp_path / "out" / "README.md").read_text()
