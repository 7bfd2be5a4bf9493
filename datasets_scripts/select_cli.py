"""`salad-select`: Stage II active selection (paper §3.3) from a YAML config.

    salad-select --config select.yaml [--gamma 0 --output_dir runs/uniform ...]

Steps (each timed in report/report.json): text pool -> sentence embeddings -> balanced k-means (K clusters) ->
per-cluster probe documents synthesized with TTS (+ CER with Whisper) -> M(c) with the SALAD checkpoint
(`trainers.diagnostics.misalignment`) -> drop clusters whose probe CER > max_cer -> target P(c) ∝ P_pool(c)·M(c)^γ
-> sample texts uniformly within clusters up to the budget -> synthesize them as span documents with salad-synth's
writer. Output folder: `dataset/` (Hub-ready span dataset with card; rows carry cluster, misalignment, gamma,
round, seed, domain) and `report/` (report.md, clusters.png, report.json). Re-running resumes: the pool, the
embeddings, the clustering and the probe scores are cached in the output folder, the synthesis by chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from .active_selection import (allocate_counts, cluster_cer, fit_balanced_kmeans, probe_documents_from_rows,
                               probe_texts_by_cluster, sample_within_clusters, score_clusters, target_distribution)

__all__ = ["SelectConfig", "load_config", "load_salad_checkpoint", "run_selection", "main"]
UNTRAINED_DEMO = "untrained-demo"


@dataclass
class SelectConfig:
    """Settings of one active-selection run (YAML keys = field names)."""

    output_dir: str = field(default="runs/select", metadata={"help": "output folder (dataset/ and report/)"})
    pool: str | None = field(default=None, metadata={"help": "text pool: JSONL/.txt/datasets folder; None builds "
                                                            "the packaged BIG-bench + evals pool"})
    pool_exclude: list[str] = field(default_factory=lambda: ["general_knowledge"], metadata={
        "help": "tasks left out of the packaged pool (the evaluation tasks)"})
    pool_max_per_domain: int = field(default=60, metadata={"help": "cap per domain of the packaged pool"})
    checkpoint: str = field(default=UNTRAINED_DEMO, metadata={
        "help": "SALAD checkpoint folder scoring M(c) (Stage I model); 'untrained-demo' builds an untrained one "
                "from the embedded SmolLM2 + Whisper tiny.en"})
    embedding_model: str = field(default="minilm", metadata={"help": "minilm | bge-large | model id or folder"})
    embedding_pooling: str | None = field(default=None, metadata={"help": "mean | cls | None (per model)"})
    embedding_batch_size: int = field(default=64, metadata={"help": "texts per embedding batch"})
    embedding_cache_dir: str | None = field(default=None, metadata={"help": "embedding cache (default: "
                                                                           "<output_dir>/cache/embeddings)"})
    num_clusters: int = field(default=16, metadata={"help": "K of the balanced k-means (paper: 128)"})
    kmeans_iters: int = field(default=25, metadata={"help": "maximum Lloyd iterations"})
    gamma: float = field(default=5.0, metadata={"help": "exponent of M(c) in the target (paper: 5; 0 = uniform)"})
    budget_texts: int | None = field(default=None, metadata={"help": "budget: number of texts"})
    budget_hours: float | None = field(default=None, metadata={"help": "budget: hours of synthesized audio"})
    budget_tokens: int | None = field(default=None, metadata={"help": "budget: LLM tokens of selected text"})
    words_per_second: float = field(default=2.5, metadata={"help": "speaking rate for the hours estimate before "
                                                                   "the probes measure it"})
    tts: str = field(default="piper", metadata={"help": "voice pool, e.g. 'piper,flite:slt,festival'"})
    probe_size: int = field(default=4, metadata={"help": "probe documents per cluster"})
    probe_min_words: int = field(default=25, metadata={"help": "words per probe document (texts concatenated)"})
    max_cer: float | None = field(default=0.5, metadata={"help": "drop clusters whose mean probe CER exceeds this "
                                                                "(None: no ASR check)"})
    cer_model: str | None = field(default=None, metadata={"help": "Whisper folder for the CER (None: embedded "
                                                                 "tiny.en)"})
    misalignment_batch_size: int = field(default=4, metadata={"help": "probe documents per forward pass"})
    synthesize: bool = field(default=True, metadata={"help": "synthesize the selected texts (else only select)"})
    num_proc: int = field(default=1, metadata={"help": "TTS worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of clustering, probes, sampling and voices"})
    round: int = field(default=1, metadata={"help": "selection round recorded in every row (paper: one)"})
    device: str | None = field(default=None, metadata={"help": "cuda / cpu (default: cuda when available)"})
    examples_per_cluster: int = field(default=3, metadata={"help": "example texts per cluster in the report"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run the checkpoint's own code even when it is not byte-identical to the installed modeling_salad"})

    def __post_init__(self):
        budgets = [b for b in (self.budget_texts, self.budget_hours, self.budget_tokens) if b is not None]
        if len(budgets) != 1:
            raise ValueError("give exactly one of budget_texts, budget_hours, budget_tokens")
        if budgets[0] <= 0:
            raise ValueError(f"the budget must be positive, got {budgets[0]}")
        if self.num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {self.num_clusters}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.max_cer is not None and not 0 <= self.max_cer:
            raise ValueError(f"max_cer must be >= 0 or null, got {self.max_cer}")
        if self.words_per_second <= 0 or self.probe_size < 1 or self.probe_min_words < 1:
            raise ValueError("words_per_second, probe_size and probe_min_words must be positive")


def load_config(path: str | None, overrides: dict | None = None) -> SelectConfig:
    """YAML file + overrides -> SelectConfig; unknown keys are a ValueError naming them."""
    data = {}
    if path:
        if not Path(path).is_file():
            raise ValueError(f"config file {path} does not exist")
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping")
    data.update(overrides or {})
    names = {f.name for f in dataclasses.fields(SelectConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {sorted(names)}")
    return SelectConfig(**data)


def load_salad_checkpoint(checkpoint: str, device: str | torch.device = "cpu", trust_remote_code: bool = False):
    """(model, processor) from a SALAD checkpoint folder, or an untrained one built from the embedded assets."""
    from modeling_salad import build_salad
    from modeling_salad.loading import load_salad

    if checkpoint == UNTRAINED_DEMO:
        try:
            from salad_demo.assets import prepare_assets
        except ImportError as err:
            raise ValueError("checkpoint 'untrained-demo' needs salad_demo.assets (the embedded parts)") from err
        assets = prepare_assets()
        model, processor = build_salad(str(assets["llm"]), str(assets["whisper"]))
    else:
        if not Path(checkpoint).is_dir():
            raise ValueError(f"checkpoint {checkpoint!r} is not a folder (or use 'untrained-demo')")
        model, processor = load_salad(checkpoint, trust_remote_code)
    return model.to(device).eval(), processor


def _atomic_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_pool(cfg: SelectConfig, state: Path) -> list[dict]:
    from .text_pool import PoolConfig, build_text_pool, load_pool, save_pool

    if cfg.pool:
        return load_pool(cfg.pool)
    cached = state / f"pool-{_digest(cfg.pool_exclude, cfg.pool_max_per_domain, cfg.seed)}.jsonl"
    if cached.is_file():
        return load_pool(cached)
    rows = build_text_pool(PoolConfig(exclude=tuple(cfg.pool_exclude), max_per_domain=cfg.pool_max_per_domain,
                                      seed=cfg.seed))
    save_pool(rows, cached)
    return rows


def _synthesize_probes(cfg, pool, probes, transcriber):
    """Probe documents: spans with the first spoken, so every document has text to distill after speech.
    Speech spans go through salad-synth's `synthesize_rows` (utterance mode, one row per span)."""
    from .spans import SPEECH, split_into_spans
    from .synth import synthesize_rows
    from .tts import stable_hash

    span_rows, speech_rows, cluster_of_doc = [], [], {}
    for c, docs in probes.items():
        for k, (text, _) in enumerate(docs):
            doc_id = f"probe-c{c:03d}-{k:02d}"
            cluster_of_doc[doc_id] = c
            for i, span in enumerate(split_into_spans(text, seed=stable_hash("probe", cfg.seed, doc_id),
                                                      first=SPEECH)):
                row = {"id": f"{doc_id}-{i:03d}", "doc_id": doc_id, "span_index": i, "text": span["text"],
                       "audio": None, "cer": None, "duration": None}
                span_rows.append(row)
                if span["kind"] == SPEECH:
                    speech_rows.append(row)
    result = synthesize_rows([{"id": r["id"], "text": r["text"]} for r in speech_rows], pool, mode="utterance",
                             seed=cfg.seed, transcriber=transcriber, num_proc=cfg.num_proc, source="probe")
    by_id = {r["id"]: r for r in result["rows"]}
    for row in speech_rows:
        if row["id"] in by_id:
            row.update(audio=by_id[row["id"]]["audio"], cer=by_id[row["id"]]["cer"],
                       duration=by_id[row["id"]]["duration"])
    return span_rows, cluster_of_doc, result


def _cost_per_text(cfg, texts, processor, seconds_per_word):
    if cfg.budget_texts is not None:
        return np.ones(len(texts)), float(cfg.budget_texts)
    if cfg.budget_hours is not None:
        return np.array([len(t.split()) * seconds_per_word for t in texts]), cfg.budget_hours * 3600.0
    lengths = [len(ids) for ids in processor.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    return np.array(lengths, dtype=np.float64), float(cfg.budget_tokens)


def run_selection(cfg: SelectConfig, model=None, processor=None, pool_voices=None, transcriber=None,
                  progress: bool = True) -> dict:
    """Run the whole selection; returns the report dict (also written to report/report.json).

    model/processor, pool_voices (a VoicePool) and transcriber (``.cer(clips, texts)``) may be passed in (tests,
    notebooks); otherwise they are built from the config.
    """
    from .embeddings import TextEmbedder
    from .tts import VoicePool

    out = Path(cfg.output_dir)
    state, report_dir = out / "cache", out / "report"
    state.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")

    t = time.perf_counter()
    pool = _load_pool(cfg, state)
    texts = [r["text"] for r in pool]
    if len(texts) < cfg.num_clusters:
        raise ValueError(f"the pool has {len(texts)} texts, fewer than num_clusters={cfg.num_clusters}")
    timings["pool"] = time.perf_counter() - t

    t = time.perf_counter()
    embedder = TextEmbedder(cfg.embedding_model, pooling=cfg.embedding_pooling, device=device,
                            batch_size=cfg.embedding_batch_size,
                            cache_dir=cfg.embedding_cache_dir or state / "embeddings")
    embeddings = embedder.embed(texts, show_progress=progress)
    timings["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    km_file = state / f"kmeans-{_digest([r['id'] for r in pool], embedder.model_id, cfg.num_clusters, cfg.seed, cfg.kmeans_iters)}.pt"
    if km_file.is_file():
        km = torch.load(km_file)
        labels, centroids = km["labels"], km["centroids"]
    else:
        result = fit_balanced_kmeans(embeddings, cfg.num_clusters, seed=cfg.seed, iters=cfg.kmeans_iters,
                                     device=device, show_progress=progress)
        labels, centroids = result.labels, result.centroids
        torch.save({"labels": labels, "centroids": centroids}, str(km_file) + ".tmp")
        os.replace(str(km_file) + ".tmp", km_file)
    labels_np = labels.numpy()
    k = cfg.num_clusters
    sizes = np.bincount(labels_np, minlength=k)
    pool_probs = sizes / sizes.sum()
    timings["kmeans"] = time.perf_counter() - t

    voices = pool_voices or VoicePool(cfg.tts, seed=cfg.seed)
    probes = probe_texts_by_cluster(texts, labels_np, cfg.probe_size, cfg.probe_min_words, seed=cfg.seed)
    score_file = state / f"scores-{km_file.stem}-{_digest(cfg.checkpoint, str(voices), cfg.probe_size, cfg.probe_min_words, cfg.max_cer, cfg.cer_model)}.json"
    if score_file.is_file():
        scores = json.loads(score_file.read_text())
        timings.update(scores["timings"])
    else:
        t = time.perf_counter()
        if transcriber is None and cfg.max_cer is not None:
            from .asr_check import WhisperTranscriber

            transcriber = WhisperTranscriber(cfg.cer_model, device=device)
        span_rows, cluster_of_doc, synth_result = _synthesize_probes(cfg, voices, probes, transcriber)
        probe_timing = {"probe_tts": time.perf_counter() - t}
        t = time.perf_counter()
        if model is None:
            model, processor = load_salad_checkpoint(cfg.checkpoint, device, cfg.trust_remote_code)
        docs_by_cluster: dict[int, list[dict]] = {}
        for doc in probe_documents_from_rows(span_rows):
            docs_by_cluster.setdefault(cluster_of_doc[doc["id"]], []).append(doc)
        m_scores = score_clusters(model, processor, docs_by_cluster, cfg.misalignment_batch_size, progress=progress)
        probe_timing["misalignment"] = time.perf_counter() - t
        words = sum(len(r["text"].split()) for r in span_rows)
        audio_seconds = sum(r["duration"] or 0.0 for r in span_rows)
        scores = {"misalignment": {str(c): v for c, v in m_scores.items()},
                  "cer": {str(c): v for c, v in cluster_cer(span_rows, cluster_of_doc).items()},
                  "seconds_per_word": audio_seconds / words if audio_seconds > 0 else None,
                  "probe_skipped": len(synth_result["skipped"]), "timings": probe_timing}
        _atomic_json(score_file, scores)
        timings.update(probe_timing)

    t = time.perf_counter()
    m = np.array([scores["misalignment"].get(str(c), np.nan) for c in range(k)])
    cer = np.array([scores["cer"].get(str(c), np.nan) for c in range(k)])
    dropped_cer = [c for c in range(k) if cfg.max_cer is not None and np.isfinite(cer[c]) and cer[c] > cfg.max_cer]
    unscored = [c for c in range(k) if not np.isfinite(m[c])]
    keep = np.array([c not in dropped_cer and c not in unscored for c in range(k)])
    target = target_distribution(pool_probs, np.nan_to_num(m, nan=0.0), cfg.gamma, keep=keep)
    probe_ids = {i for docs in probes.values() for _, ids in docs for i in ids}
    available = np.array([int(((labels_np == c) & ~np.isin(np.arange(len(texts)), list(probe_ids))).sum())
                          for c in range(k)])
    seconds_per_word = scores["seconds_per_word"] or 1.0 / (3.0 * cfg.words_per_second)  # ~1/3 of words spoken
    if cfg.budget_tokens is not None and processor is None:  # probe scores came from the cache
        from modeling_salad.loading import load_salad_processor

        processor = (load_salad_checkpoint(cfg.checkpoint)[1] if cfg.checkpoint == UNTRAINED_DEMO
                     else load_salad_processor(cfg.checkpoint, cfg.trust_remote_code))
    cost, budget = _cost_per_text(cfg, texts, processor, seconds_per_word)
    mean_cost = np.array([cost[labels_np == c].mean() for c in range(k)])
    n_texts = int(budget // float((target * mean_cost).sum()))
    counts = allocate_counts(target, n_texts, available)
    chosen = sample_within_clusters(labels_np, counts, seed=cfg.seed, exclude=sorted(probe_ids))
    timings["select"] = time.perf_counter() - t

    selection_rows = [{"id": pool[i]["id"], "text": texts[i], "cluster": int(labels_np[i]),
                       "misalignment": float(m[labels_np[i]]), "gamma": float(cfg.gamma), "round": int(cfg.round),
                       "seed": int(cfg.seed), "domain": pool[i]["domain"]} for i in chosen]
    from .text_pool import save_pool

    save_pool(selection_rows, out / "selection.jsonl")
    synth_summary = None
    if cfg.synthesize and selection_rows:
        from datasets import Value

        from .synth_writer import write_span_dataset

        t = time.perf_counter()
        extra = {"cluster": Value("int32"), "misalignment": Value("float32"), "gamma": Value("float32"),
                 "round": Value("int32"), "seed": Value("int32"), "domain": Value("string")}
        selection_card = {"method": "SALAD Stage II active selection (arXiv 2510.13632 §3.3)",
                          "checkpoint": cfg.checkpoint, "embedding_model": embedder.model_id,
                          "clusters (K)": k, "gamma": cfg.gamma, "round": cfg.round, "seed": cfg.seed,
                          "budget": {"texts": cfg.budget_texts, "hours": cfg.budget_hours,
                                     "tokens": cfg.budget_tokens},
                          "clusters dropped for CER": dropped_cer, "max_cer": cfg.max_cer}
        synth_summary = write_span_dataset(
            selection_rows, out / "dataset", voices, mode="spans", seed=cfg.seed, num_proc=cfg.num_proc,
            source="salad-select", run_config={"input": cfg.pool or "packaged BIG-bench + evals pool",
                                               "text_column": "text", "cer_model": None},
            card_context={"sources": [{"name": cfg.pool or "BIG-bench task.json + OpenAI evals registry",
                                       "license": "apache-2.0" if not cfg.pool else "unknown"}],
                          "selection": selection_card, "tags": ["active-selection"],
                          "description": "Texts selected by misalignment-driven importance sampling "
                                         "and synthesized as interleaved speech/text span documents."},
            extra_features=extra, progress=progress)
        timings["synthesize"] = time.perf_counter() - t

    report = {"config": dataclasses.asdict(cfg), "pool_size": len(texts),
              "pool_domains": len({r["domain"] for r in pool}), "embedding_model": embedder.model_id,
              "device": device, "timings_seconds": {k_: round(v, 2) for k_, v in timings.items()},
              "clusters": [], "dropped_for_cer": dropped_cer, "unscored": unscored, "selected_texts": len(chosen),
              "estimated_budget_use": float((counts * mean_cost).sum()), "seconds_per_word": seconds_per_word,
              "synthesis": synth_summary and {"audio_hours": synth_summary["totals"]["audio_hours"],
                                              "rows": synth_summary["totals"]["rows"],
                                              "skipped": synth_summary["totals"]["skipped"]}}
    for c in range(k):
        members = np.flatnonzero(labels_np == c)
        domains: dict[str, int] = {}
        for i in members:
            domains[pool[i]["domain"]] = domains.get(pool[i]["domain"], 0) + 1
        report["clusters"].append({
            "cluster": c, "size": int(sizes[c]), "pool_prob": float(pool_probs[c]),
            "misalignment": None if not np.isfinite(m[c]) else float(m[c]),
            "cer": None if not np.isfinite(cer[c]) else float(cer[c]), "dropped": c in dropped_cer,
            "target_prob": float(target[c]), "selected": int(counts[c]),
            "top_domains": sorted(domains.items(), key=lambda kv: -kv[1])[:3],
            "examples": [texts[i][:160] for i in members[: cfg.examples_per_cluster]]})
    write_report(report, report_dir)
    return report


def plot_clusters(report: dict, path: Path) -> Path:
    """Three bar panels per cluster: P_pool(c), M(c), target P(c) (dropped clusters hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clusters = report["clusters"]
    x = np.arange(len(clusters))
    fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.45 * len(x) + 2), 7), sharex=True)
    panels = (("pool_prob", "P_pool(c)"), ("misalignment", "M(c)"), ("target_prob", f"target (γ={report['config']['gamma']:g})"))
    for ax, (key, title) in zip(axes, panels):
        values = [c[key] if c[key] is not None else 0.0 for c in clusters]
        bars = ax.bar(x, values, color="tab:blue" if key != "misalignment" else "tab:red")
        for bar, c in zip(bars, clusters):
            if c["dropped"]:
                bar.set_hatch("//")
                bar.set_facecolor("lightgray")
        ax.set_ylabel(title)
    axes[-1].set_xticks(x, [str(c["cluster"]) for c in clusters])
    axes[-1].set_xlabel("cluster (hatched: dropped for CER)")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_report(report: dict, report_dir: Path) -> Path:
    """report.md + clusters.png + report.json in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    _atomic_json(report_dir / "report.json", report)
    plot_clusters(report, report_dir / "clusters.png")
    cfg = report["config"]
    ranked = sorted((c for c in report["clusters"] if c["misalignment"] is not None), key=lambda c: -c["misalignment"])
    lines = [f"# Active selection report (round {cfg['round']}, γ = {cfg['gamma']:g}, seed {cfg['seed']})", "",
             f"* checkpoint: `{cfg['checkpoint']}`", f"* pool: {report['pool_size']} texts, "
             f"{report['pool_domains']} domains; embeddings: `{report['embedding_model']}`; K = {len(report['clusters'])}",
             f"* selected: {report['selected_texts']} texts; dropped for CER > {cfg['max_cer']}: "
             f"{report['dropped_for_cer'] or 'none'}; unscored: {report['unscored'] or 'none'}",
             f"* measured speech rate: {report['seconds_per_word'] and round(report['seconds_per_word'], 3)} s of audio "
             "per document word", f"* timings (s): {report['timings_seconds']}"]
    if report.get("synthesis"):
        lines.append(f"* synthesized: {report['synthesis']['rows']} span rows, "
                     f"{report['synthesis']['audio_hours']:.4f} h of audio; skipped: {report['synthesis']['skipped']}")
    lines += ["", "![clusters](clusters.png)", "", "## Most misaligned clusters", ""]
    lines += [f"{rank + 1}. cluster {c['cluster']}: M = {c['misalignment']:.4f} "
              f"({', '.join(d for d, _ in c['top_domains'])})" for rank, c in enumerate(ranked[:5])]
    lines += ["", "## Clusters", "", "| cluster | size | P_pool | M(c) | CER | dropped | target | selected | top domains |",
              "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for c in report["clusters"]:
        domains = "; ".join(f"{d} ({n})" for d, n in c["top_domains"])
        lines.append(f"| {c['cluster']} | {c['size']} | {c['pool_prob']:.3f} | {fmt(c['misalignment'])} | "
                     f"{fmt(c['cer'])} | {'yes' if c['dropped'] else ''} | {c['target_prob']:.3f} | "
                     f"{c['selected']} | {domains} |")
    lines += ["", "## Example texts per cluster", ""]
    for c in report["clusters"]:
        lines.append(f"**Cluster {c['cluster']}**" + (" (dropped)" if c["dropped"] else ""))
        lines += [f"* {t}" for t in c["examples"]] + [""]
    path = report_dir / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _coerce(value: str):
    return yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (keys = SelectConfig fields)")
    for f in dataclasses.fields(SelectConfig):
        parser.add_argument(f"--{f.name}", dest=f.name, type=_coerce, default=argparse.SUPPRESS,
                            help=f.metadata.get("help", ""))
    parser.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                        default=argparse.SUPPRESS, help="same as --trust_remote_code true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = vars(build_parser().parse_args(argv))
    config_path, quiet = args.pop("config", None), args.pop("quiet")
    try:
        cfg = load_config(config_path, args)
        report = run_selection(cfg, progress=not quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"salad-select: error: {err}", file=sys.stderr)
        return 2
    top = sorted((c for c in report["clusters"] if c["misalignment"] is not None),
                 key=lambda c: -c["misalignment"])[:3]
    print(f"salad-select: {report['selected_texts']} texts from {report['pool_size']} "
          f"({len(report['clusters'])} clusters, {len(report['dropped_for_cer'])} dropped for CER) -> "
          f"{Path(cfg.output_dir) / 'dataset'}; report: {Path(cfg.output_dir) / 'report' / 'report.md'}; "
          f"most misaligned clusters: " + ", ".join(f"{c['cluster']} (M={c['misalignment']:.3f})" for c in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
