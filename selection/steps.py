"""Stage II active selection as small steps that resume through one cache.

    pool -> embed -> cluster -> probe -> score -> target -> sample -> synthesize -> report

Each step does one thing. The steps up to `sample` store their output in one folder (`StepCache`, by default
<output_dir>/cache), under a name made of the step and a digest of every setting that determines the output,
including the digests of the steps it reads. A step whose output is there for the same inputs is read back
instead of run, so a killed run resumes at the first missing step, and two runs that differ only in gamma (and
share `cache_dir`) share the pool, the embeddings, the clusters, the probes and the scores. `synthesize` resumes
through salad-synth's own chunk records and is skipped when the dataset folder holds the finished run.

`run_selection(cfg)` runs them all; each `step_*` function can also be called on a `SelectionRun` by itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from spans.files import atomic_write_bytes, atomic_write_json

from .active_selection import (MisalignmentScorer, allocate_counts, cluster_cer, fit_balanced_kmeans,
                               probe_documents_from_rows, probe_texts_by_cluster, sample_within_clusters,
                               score_clusters, target_distribution)
from .config import SelectConfig

__all__ = ["StepCache", "SelectionRun", "run_selection", "load_salad_checkpoint", "checkpoint_stamp", "step_pool",
           "step_embed", "step_cluster", "step_probe", "step_score", "step_target", "step_sample",
           "step_synthesize", "step_report", "STEPS"]

STEPS = ("pool", "embed", "cluster", "probe", "score", "target", "sample", "synthesize", "report")


def digest(settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StepResult:
    key: str
    value: Any
    seconds: float
    cached: bool


class StepCache:
    """A folder of step outputs named `<step>-<digest of its settings>`; the `.record.json` beside an output is
    written after it and marks it complete. Outputs are JSON (`kind="json"`) or pickled (`kind="pickle"`:
    tensors, audio bytes)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, key: str, kind: str) -> tuple[Path, Path]:
        return self.root / f"{key}.{'json' if kind == 'json' else 'pkl'}", self.root / f"{key}.record.json"

    def run(self, step: str, settings: dict, compute: Callable[[], Any], kind: str = "json") -> StepResult:
        key = f"{step}-{digest(settings)}"
        data_path, record_path = self.paths(key, kind)
        if record_path.is_file() and data_path.is_file():
            seconds = json.loads(record_path.read_text())["seconds"]
            return StepResult(key, self._load(data_path, kind), seconds, cached=True)
        start = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - start
        if kind == "json":
            atomic_write_json(data_path, value)
            value = json.loads(data_path.read_text())  # the same form a later run reads back
        else:
            atomic_write_bytes(data_path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        atomic_write_json(record_path, {"step": step, "settings": settings, "seconds": seconds})
        return StepResult(key, value, seconds, cached=False)

    @staticmethod
    def _load(path: Path, kind: str):
        if kind == "json":
            return json.loads(path.read_text())
        return pickle.loads(path.read_bytes())


def checkpoint_stamp(path: str | None) -> list | None:
    """What identifies a checkpoint folder's weights for a cache key: its path and its files' sizes and times."""
    if path is None:
        return None
    folder = Path(path)
    files = sorted(p for p in folder.glob("*") if p.suffix in (".json", ".safetensors", ".bin") and p.is_file())
    return [str(folder.resolve()), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]]


def load_salad_checkpoint(checkpoint: str, device: str | torch.device = "cpu", trust_remote_code: bool = False):
    """(model, processor) from a SALAD checkpoint folder, in eval mode on `device`; the folder's own code runs
    only when it is the installed `modeling_salad` or `trust_remote_code` is set."""
    from modeling_salad.loading import load_salad

    _check_checkpoint(checkpoint)
    model, processor = load_salad(checkpoint, trust_remote_code)
    return model.to(device).eval(), processor


def _check_checkpoint(checkpoint: str | None) -> None:
    if checkpoint is None:
        raise ValueError("active selection needs the SALAD checkpoint whose misalignment M(c) it follows: set "
                         "`checkpoint: FOLDER` in the YAML or pass --checkpoint FOLDER (e.g. a Stage I output_dir)")
    if not (Path(checkpoint) / "config.json").is_file():
        raise ValueError(f"checkpoint {checkpoint!r} is not a model folder with a config.json; pass the folder of "
                         "a SALAD checkpoint (--checkpoint)")


@dataclass
class SelectionRun:
    """One selection in progress: the settings, the cache, what was passed in or loaded, and each step's cache
    key and seconds. `scorer` (M of span documents), `processor` (token budgets), `voices` (a VoicePool) and
    `transcriber` (``.cer(clips, texts)``) are built from the settings when not given."""

    cfg: SelectConfig
    progress: bool = True
    scorer: MisalignmentScorer | None = None
    processor: Any = None
    voices: Any = None
    transcriber: Any = None
    embedding_model: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.cache = StepCache(self.cfg.step_cache_dir)
        self.device = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.voices is None:
            from datasets_scripts.tts import VoicePool

            self.voices = VoicePool(self.cfg.tts, seed=self.cfg.seed)

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)

    def cached(self, step: str, settings: dict, compute: Callable[[], Any], kind: str = "json"):
        result = self.cache.run(step, settings, compute, kind)
        self.keys[step], self.timings[step] = result.key, result.seconds
        return result.value

    def timed(self, step: str, compute: Callable[[], Any]):
        start = time.perf_counter()
        value = compute()
        self.timings[step] = time.perf_counter() - start
        return value

    def get_scorer(self) -> MisalignmentScorer:
        if self.scorer is None:
            from trainers.diagnostics import MisalignmentProbe

            model, self.processor = load_salad_checkpoint(self.cfg.checkpoint, self.device,
                                                          self.cfg.trust_remote_code)
            self.scorer = MisalignmentProbe(model, self.processor, batch_size=self.cfg.misalignment_batch_size)
        return self.scorer

    def get_processor(self):
        if self.processor is None:
            from modeling_salad.loading import load_salad_processor

            self.processor = load_salad_processor(self.cfg.checkpoint, self.cfg.trust_remote_code)
        return self.processor

    def get_transcriber(self):
        if self.transcriber is None and self.cfg.max_cer is not None:
            from datasets_scripts.asr_check import WhisperTranscriber

            self.transcriber = WhisperTranscriber(self.cfg.cer_model, device=self.device)
        return self.transcriber


# ------------------------------------------------------------------------------------------------ the steps


def step_pool(run: SelectionRun) -> list[dict]:
    """The text pool: the user's file (read each time, keyed by its content) or the packaged BIG-bench + evals
    pool (built once per setting)."""
    from .text_pool import POOL_VERSION, PoolConfig, build_text_pool, load_pool

    cfg = run.cfg
    if cfg.pool:
        rows = run.timed("pool", lambda: load_pool(cfg.pool))
        run.keys["pool"] = "pool-" + digest([(r["id"], r["text"], r["domain"]) for r in rows])
    else:
        settings = {"exclude": list(cfg.pool_exclude), "max_per_domain": cfg.pool_max_per_domain, "seed": cfg.seed,
                    "version": POOL_VERSION}
        rows = run.cached("pool", settings, lambda: build_text_pool(PoolConfig(
            exclude=tuple(cfg.pool_exclude), max_per_domain=cfg.pool_max_per_domain, seed=cfg.seed)))
    if len(rows) < cfg.num_clusters:
        raise ValueError(f"the pool has {len(rows)} texts, fewer than num_clusters={cfg.num_clusters}")
    return rows


def _embedder(run: SelectionRun):
    from .embeddings import TextEmbedder

    cfg = run.cfg
    return TextEmbedder(cfg.embedding_model, pooling=cfg.embedding_pooling, device=run.device,
                        batch_size=cfg.embedding_batch_size,
                        cache_dir=cfg.embedding_cache_dir or cfg.step_cache_dir / "embeddings")


def step_embed(run: SelectionRun, pool: list[dict]) -> torch.Tensor:
    """Sentence embeddings of the pool, float32 [N, D]."""
    embedder = _embedder(run)
    run.embedding_model = embedder.model_id
    settings = {"pool": run.keys["pool"], "embedder": embedder.fingerprint}
    return run.cached("embed", settings, lambda: embedder.embed([r["text"] for r in pool],
                                                                show_progress=run.progress), kind="pickle")


def step_cluster(run: SelectionRun, embeddings: torch.Tensor) -> np.ndarray:
    """Balanced k-means labels [N] of the pool."""
    cfg = run.cfg

    def fit():
        return fit_balanced_kmeans(embeddings, cfg.num_clusters, seed=cfg.seed, iters=cfg.kmeans_iters,
                                   device=run.device, show_progress=run.progress).labels.numpy()

    settings = {"embed": run.keys["embed"], "k": cfg.num_clusters, "seed": cfg.seed, "iters": cfg.kmeans_iters}
    return run.cached("cluster", settings, fit, kind="pickle")


def _synthesize_probes(run: SelectionRun, probes: dict) -> tuple[list[dict], dict[str, int], int]:
    """Probe documents as span rows, the first span spoken so every document has text to distill after speech;
    the speech spans go through salad-synth's `synthesize_rows` (utterance mode, one row per span)."""
    from spans import SPEECH, split_into_spans
    from datasets_scripts.synth import synthesize_rows
    from datasets_scripts.tts import stable_hash

    span_rows, speech_rows, cluster_of_doc = [], [], {}
    for c, docs in probes.items():
        for k, (text, _) in enumerate(docs):
            doc_id = f"probe-c{int(c):03d}-{k:02d}"
            cluster_of_doc[doc_id] = int(c)
            for i, span in enumerate(split_into_spans(text, seed=stable_hash("probe", run.cfg.seed, doc_id),
                                                      first=SPEECH)):
                row = {"id": f"{doc_id}-{i:03d}", "doc_id": doc_id, "span_index": i, "text": span["text"],
                       "audio": None, "cer": None, "duration": None}
                span_rows.append(row)
                if span["kind"] == SPEECH:
                    speech_rows.append(row)
    result = synthesize_rows([{"id": r["id"], "text": r["text"]} for r in speech_rows], run.voices,
                             mode="utterance", seed=run.cfg.seed, transcriber=run.get_transcriber(),
                             num_proc=run.cfg.num_proc, source="probe", progress=run.progress)
    by_id = {r["id"]: r for r in result["rows"]}
    for row in speech_rows:
        if row["id"] in by_id:
            row.update({k: by_id[row["id"]][k] for k in ("audio", "cer", "duration")})
    return span_rows, cluster_of_doc, len(result["skipped"])


def step_probe(run: SelectionRun, pool: list[dict], labels: np.ndarray) -> dict:
    """Per cluster, probe documents from its texts, spoken by the voice pool (with a CER when max_cer is set):
    {"probes": {c: [(text, pool indices)]}, "span_rows", "cluster_of_doc", "skipped"}."""
    cfg = run.cfg

    def probe():
        probes = probe_texts_by_cluster([r["text"] for r in pool], labels, cfg.probe_size, cfg.probe_min_words,
                                        seed=cfg.seed)
        span_rows, cluster_of_doc, skipped = _synthesize_probes(run, probes)
        return {"probes": probes, "span_rows": span_rows, "cluster_of_doc": cluster_of_doc, "skipped": skipped}

    settings = {"cluster": run.keys["cluster"], "voices": str(run.voices), "probe_size": cfg.probe_size,
                "probe_min_words": cfg.probe_min_words, "seed": cfg.seed,
                "cer_model": cfg.cer_model if cfg.max_cer is not None else "no CER"}
    return run.cached("probe", settings, probe, kind="pickle")


def step_score(run: SelectionRun, probe: dict) -> dict:
    """M(c) and the mean probe CER per cluster, and the speech rate the probes measured."""
    span_rows, cluster_of_doc = probe["span_rows"], probe["cluster_of_doc"]

    def score():
        docs_by_cluster: dict[int, list[dict]] = {}
        for doc in probe_documents_from_rows(span_rows):
            docs_by_cluster.setdefault(cluster_of_doc[doc["id"]], []).append(doc)
        m_scores = score_clusters(run.get_scorer(), docs_by_cluster, progress=run.progress)
        words = sum(len(r["text"].split()) for r in span_rows)
        audio_seconds = sum(r["duration"] or 0.0 for r in span_rows)
        return {"misalignment": {str(c): v for c, v in m_scores.items()},
                "cer": {str(c): v for c, v in cluster_cer(span_rows, cluster_of_doc).items()},
                "seconds_per_word": audio_seconds / words if audio_seconds > 0 else None}

    scorer_id = checkpoint_stamp(run.cfg.checkpoint) if run.cfg.checkpoint else repr(type(run.scorer))
    return run.cached("score", {"probe": run.keys["probe"], "scorer": scorer_id}, score)


def _per_cluster(values: dict, k: int) -> np.ndarray:
    return np.array([values.get(str(c), np.nan) for c in range(k)], dtype=np.float64)


def step_target(run: SelectionRun, labels: np.ndarray, scores: dict) -> dict:
    """Drop clusters whose probe CER exceeds max_cer (and unscored ones); target P(c) ∝ P_pool(c)·M(c)^γ."""
    cfg, k = run.cfg, run.cfg.num_clusters

    def target():
        m, cer = _per_cluster(scores["misalignment"], k), _per_cluster(scores["cer"], k)
        dropped = [c for c in range(k) if cfg.max_cer is not None and np.isfinite(cer[c]) and cer[c] > cfg.max_cer]
        unscored = [c for c in range(k) if not np.isfinite(m[c])]
        keep = np.array([c not in dropped and c not in unscored for c in range(k)])
        sizes = np.bincount(labels, minlength=k)
        probs = target_distribution(sizes / sizes.sum(), np.nan_to_num(m, nan=0.0), cfg.gamma, keep=keep)
        return {"target": probs.tolist(), "pool_probs": (sizes / sizes.sum()).tolist(), "sizes": sizes.tolist(),
                "dropped": dropped, "unscored": unscored}

    settings = {"cluster": run.keys["cluster"], "score": run.keys["score"], "gamma": cfg.gamma,
                "max_cer": cfg.max_cer}
    return run.cached("target", settings, target)


def _cost_per_text(run: SelectionRun, texts: list[str], seconds_per_word: float) -> tuple[np.ndarray, float]:
    cfg = run.cfg
    if cfg.budget_texts is not None:
        return np.ones(len(texts)), float(cfg.budget_texts)
    if cfg.budget_hours is not None:
        return np.array([len(t.split()) * seconds_per_word for t in texts]), cfg.budget_hours * 3600.0
    tokenizer = run.get_processor().tokenizer
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    return np.array(lengths, dtype=np.float64), float(cfg.budget_tokens)


def step_sample(run: SelectionRun, pool: list[dict], labels: np.ndarray, probe: dict, scores: dict,
                target: dict) -> dict:
    """How many texts per cluster the budget buys under the target, and which (uniform within a cluster, the
    probe texts left out); writes <output_dir>/selection.jsonl."""
    from .text_pool import save_pool

    cfg, k = run.cfg, run.cfg.num_clusters

    def sample():
        probe_ids = sorted({i for docs in probe["probes"].values() for _, ids in docs for i in ids})
        free = ~np.isin(np.arange(len(pool)), probe_ids)
        available = np.array([int(((labels == c) & free).sum()) for c in range(k)])
        seconds_per_word = scores["seconds_per_word"] or 1.0 / (3.0 * cfg.words_per_second)  # ~1/3 words spoken
        cost, budget = _cost_per_text(run, [r["text"] for r in pool], seconds_per_word)
        mean_cost = np.array([cost[labels == c].mean() for c in range(k)])
        probs = np.array(target["target"])
        counts = allocate_counts(probs, int(budget // float((probs * mean_cost).sum())), available)
        chosen = sample_within_clusters(labels, counts, seed=cfg.seed, exclude=probe_ids)
        return {"chosen": chosen, "counts": counts.tolist(), "seconds_per_word": seconds_per_word,
                "estimated_budget_use": float((counts * mean_cost).sum())}

    tokenizer = checkpoint_stamp(cfg.checkpoint) if cfg.budget_tokens is not None else None
    settings = {"target": run.keys["target"], "probe": run.keys["probe"], "score": run.keys["score"],
                "budget": cfg.budget, "words_per_second": cfg.words_per_second, "seed": cfg.seed,
                "tokenizer": tokenizer}
    sampled = run.cached("sample", settings, sample)
    m = _per_cluster(scores["misalignment"], k)
    rows = [{"id": pool[i]["id"], "text": pool[i]["text"], "cluster": int(labels[i]),
             "misalignment": float(m[labels[i]]), "gamma": float(cfg.gamma), "round": int(cfg.round),
             "seed": int(cfg.seed), "domain": pool[i]["domain"]} for i in sampled["chosen"]]
    save_pool(rows, run.output_dir / "selection.jsonl")
    return {**sampled, "rows": rows}


def _synth_config(run: SelectionRun, target: dict):
    from datasets import Value

    from datasets_scripts.synth_writer import SynthConfig

    cfg = run.cfg
    extra = {"cluster": Value("int32"), "misalignment": Value("float32"), "gamma": Value("float32"),
             "round": Value("int32"), "seed": Value("int32"), "domain": Value("string")}
    selection_card = {"method": "SALAD Stage II active selection (arXiv 2510.13632 §3.3)",
                      "checkpoint": cfg.checkpoint, "embedding_model": run.embedding_model,
                      "clusters (K)": cfg.num_clusters, "gamma": cfg.gamma, "round": cfg.round, "seed": cfg.seed,
                      "budget": cfg.budget, "clusters dropped for CER": target["dropped"], "max_cer": cfg.max_cer}
    card = {"sources": [{"name": cfg.pool or "BIG-bench task.json + OpenAI evals registry",
                         "license": "apache-2.0" if not cfg.pool else "unknown"}],
            "selection": selection_card, "tags": ["active-selection"],
            "description": "Texts selected by misalignment-driven importance sampling and synthesized as "
                           "interleaved speech/text span documents."}
    # overwrite: a folder holding another selection's synthesis is replaced, an unfinished one of this one resumed
    return SynthConfig(mode="spans", seed=cfg.seed, num_proc=cfg.num_proc, source="salad-select", overwrite=True,
                       progress=run.progress, extra_features=extra, card_context=card,
                       run_config={"input": cfg.pool or "packaged BIG-bench + evals pool", "text_column": "text",
                                   "cer_model": None})


def step_synthesize(run: SelectionRun, sample: dict, target: dict) -> dict | None:
    """The selected texts as a Hub-ready span dataset in <output_dir>/dataset (skipped when it already holds the
    finished synthesis of these rows); returns salad-synth's summary, None when synthesis is off."""
    from datasets_scripts.synth_writer import completed_summary, write_span_dataset

    if not (run.cfg.synthesize and sample["rows"]):
        return None
    folder, config = run.output_dir / "dataset", _synth_config(run, target)
    done = completed_summary(sample["rows"], folder, run.voices, config)
    if done is not None:
        run.timings["synthesize"] = 0.0
        return done
    return run.timed("synthesize", lambda: write_span_dataset(sample["rows"], folder, run.voices, config))


def _cluster_entry(run, c, pool, labels, scores, target, sample) -> dict:
    members = np.flatnonzero(labels == c)
    domains: dict[str, int] = {}
    for i in members:
        domains[pool[i]["domain"]] = domains.get(pool[i]["domain"], 0) + 1
    m, cer = scores["misalignment"].get(str(c)), scores["cer"].get(str(c))
    return {"cluster": c, "size": int(target["sizes"][c]), "pool_prob": float(target["pool_probs"][c]),
            "misalignment": None if m is None else float(m), "cer": None if cer is None else float(cer),
            "dropped": c in target["dropped"], "target_prob": float(target["target"][c]),
            "selected": int(sample["counts"][c]), "top_domains": sorted(domains.items(), key=lambda kv: -kv[1])[:3],
            "examples": [pool[i]["text"][:160] for i in members[: run.cfg.examples_per_cluster]]}


def step_report(run: SelectionRun, pool, labels, scores, target, sample, synthesis) -> dict:
    """report/report.json, report.md and clusters.png; returns the report."""
    from .report import write_report

    report = {"config": dataclasses.asdict(run.cfg), "pool_size": len(pool),
              "pool_domains": len({r["domain"] for r in pool}), "embedding_model": run.embedding_model,
              "device": run.device, "timings_seconds": {k: round(v, 2) for k, v in run.timings.items()},
              "cache_keys": dict(run.keys), "dropped_for_cer": target["dropped"], "unscored": target["unscored"],
              "selected_texts": len(sample["chosen"]), "estimated_budget_use": sample["estimated_budget_use"],
              "seconds_per_word": sample["seconds_per_word"],
              "synthesis": synthesis and {"audio_hours": synthesis["totals"]["audio_hours"],
                                          "rows": synthesis["totals"]["rows"],
                                          "skipped": synthesis["totals"]["skipped"]},
              "clusters": [_cluster_entry(run, c, pool, labels, scores, target, sample)
                           for c in range(run.cfg.num_clusters)]}
    write_report(report, run.output_dir / "report")
    return json.loads(json.dumps(report, default=str))


def run_selection(cfg: SelectConfig, scorer: MisalignmentScorer | None = None, processor=None, pool_voices=None,
                  transcriber=None, progress: bool = True) -> dict:
    """Run (or resume) every step; returns the report (also in <output_dir>/report/report.json).

    scorer: M of span documents (default: `trainers.diagnostics.MisalignmentProbe` on ``cfg.checkpoint``);
    processor: its tokenizer prices a token budget; pool_voices: a `VoicePool`; transcriber: ``.cer(clips, texts)``.
    """
    if scorer is None or (cfg.budget_tokens is not None and processor is None):
        _check_checkpoint(cfg.checkpoint)
    if transcriber is None and cfg.max_cer is not None and cfg.cer_model is None:
        raise ValueError("max_cer needs a speech recognizer for the probe CER: set `cer_model: FOLDER` (a Whisper "
                         "checkpoint folder, --cer_model) or turn the check off with `max_cer: null`")
    run = SelectionRun(cfg, progress=progress, scorer=scorer, processor=processor, voices=pool_voices,
                       transcriber=transcriber)
    pool = step_pool(run)
    labels = step_cluster(run, step_embed(run, pool))
    probe = step_probe(run, pool, labels)
    scores = step_score(run, probe)
    target = step_target(run, labels, scores)
    sample = step_sample(run, pool, labels, probe, scores, target)
    synthesis = step_synthesize(run, sample, target)
    return step_report(run, pool, labels, scores, target, sample, synthesis)
