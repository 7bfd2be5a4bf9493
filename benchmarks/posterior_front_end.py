"""Posterior front end on the embedded assets (SmolLM2-135M-Instruct + Whisper tiny.en), before any training.

Measures what `adapter_type="posterior"` should default to:
  * variants (argmax = the transcript adapter, posterior at several temperatures, top-k vs full vocabulary,
    mean vs first LLM piece) on spoken BIG-bench questions: accuracy, agreement with the base LLM's text answers,
    mean KL(text choice distribution || spoken one), paired against argmax; the ASR cascade (the transcript
    re-tokenized by the LLM: lossless pieces) beside them;
  * top-k truncation: relative error of the slot embeddings against the full-vocabulary expectation, and the time
    and saved-activation bytes of the projector's forward + backward;
  * how often a recognized Whisper token is several LLM pieces.

    SALAD_CACHE=/work/main/.cache PYTHONPATH=. python benchmarks/posterior_front_end.py --out runs/posterior_fe.json
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {  # name -> projector settings (hard = argmax mode)
    "argmax (transcript adapter)": dict(hard=True),
    "argmax, first piece": dict(hard=True, first_piece_only=True),
    "T=0.5 top16": dict(temperature=0.5, top_k=16),
    "T=1 top16": dict(temperature=1.0, top_k=16),
    "T=1 full vocab": dict(temperature=1.0, top_k=0),
    "T=2 top16": dict(temperature=2.0, top_k=16),
    "argmax, fillers first": dict(hard=True, fillers_first=True),
    "argmax, pieces spread": dict(hard=True, spread_pieces=True),
    "argmax, spread + fillers first": dict(hard=True, spread_pieces=True, fillers_first=True),
    "T=1 top16, spread + fillers first": dict(temperature=1.0, top_k=16, spread_pieces=True, fillers_first=True),
    "argmax, spread, filler ' '": dict(hard=True, spread_pieces=True, filler_text=" "),
    "argmax, spread, filler '    '": dict(hard=True, spread_pieces=True, filler_text="    "),
    "argmax, spread + fillers first, filler ' '": dict(hard=True, spread_pieces=True, fillers_first=True,
                                                        filler_text=" "),
    "argmax, spread, filler '<|endoftext|>'": dict(hard=True, spread_pieces=True, filler_text="<|endoftext|>"),
    "argmax, spread, filler ' ...'": dict(hard=True, spread_pieces=True, filler_text=" ..."),
    "T=1 top16, spread, filler ' '": dict(temperature=1.0, top_k=16, spread_pieces=True, filler_text=" "),
    "T=0.5 top16, spread, filler ' '": dict(temperature=0.5, top_k=16, spread_pieces=True, filler_text=" "),
    "T=0.25 top16, spread, filler ' '": dict(temperature=0.25, top_k=16, spread_pieces=True, filler_text=" "),
    "T=0.5 top16, spread + fillers first, filler ' '": dict(temperature=0.5, top_k=16, spread_pieces=True,
                                                             fillers_first=True, filler_text=" "),
    "argmax, spread, hidden fillers": dict(hard=True, spread_pieces=True, fillers_first=True, hide_fillers=True),
    "T=0.1 top16, spread, hidden fillers": dict(temperature=0.1, top_k=16, spread_pieces=True, fillers_first=True,
                                                hide_fillers=True),
    "T=0.25 top16, spread, hidden fillers": dict(temperature=0.25, top_k=16, spread_pieces=True, fillers_first=True,
                                                 hide_fillers=True),
}


def load_items(tasks):
    from datasets_scripts.benchmarks import load_bigbench_task
    from datasets_scripts.corpora import bigbench_task_path

    return {task: load_bigbench_task(bigbench_task_path(task, download=False), task) for task in tasks}


def synthesize(voice: str, texts: list[str], cache_dir: Path) -> list[np.ndarray]:
    """16 kHz clips of `texts` spoken by `voice`, cached as .npy by (voice, text)."""
    import hashlib

    from datasets_scripts.tts.pool import VoicePool, parse_voice_pool

    pool, clips = VoicePool(parse_voice_pool(voice)), []
    cache_dir.mkdir(parents=True, exist_ok=True)
    for text in texts:
        path = cache_dir / (hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:20] + ".npy")
        if not path.exists():
            np.save(path, pool.synthesize(text, text)[0].astype(np.float32))
        clips.append(np.load(path))
    return clips


def configure(projector, hard=False, temperature=1.0, top_k=16, first_piece_only=False, spread_pieces=False,
              fillers_first=False, filler_text=None, hide_fillers=False, model=None, tokenizer=None):
    """Set the projector to a variant; `filler_text` (one LLM token) sets the filler to its embedding (else 0)."""
    projector.hard, projector.top_k, projector.first_piece_only = hard, top_k, first_piece_only
    projector.spread_pieces, projector.fillers_first = spread_pieces, fillers_first
    projector.hide_fillers = hide_fillers
    with torch.no_grad():
        projector.filler.zero_()
        if filler_text is not None:
            (token,) = tokenizer(filler_text, add_special_tokens=False)["input_ids"]
            projector.filler.copy_(model.get_input_embeddings().weight[token])
    with torch.no_grad():
        projector.log_temperature.fill_(math.log(temperature))


def kl(p, q) -> float:
    return float(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12))))


def summarize(name, scores, text_scores, reference=None):
    from evaluation.metrics import choice_distribution

    correct = np.array([s.correct() for s in scores])
    same = np.array([s.prediction() == t.prediction() for s, t in zip(scores, text_scores)])
    kls = [kl(choice_distribution(t.logprobs), choice_distribution(s.logprobs)) for s, t in zip(scores, text_scores)]
    row = {"variant": name, "n": len(scores), "acc": 100 * correct.mean(), "agree_text": 100 * same.mean(),
           "kl_text_speech": float(np.mean(kls))}
    if reference is not None:
        ref = np.array([s.correct() for s in reference])
        row.update(gained=int((correct & ~ref).sum()), lost=int((~correct & ref).sum()))
    return row


def evaluate_variants(model, processor, whisper_tokenizer, items, clips, num_fewshot=3, variants=tuple(VARIANTS)):
    """Rows per variant (+ text, cascade) on all items of one voice."""
    from evaluation.prompts import FewShotSampler
    from evaluation.scorer import MultipleChoiceScorer
    from modeling_salad.posterior_adapter import unpack_posterior_states

    projector, rows, per_variant = model.multi_modal_projector, [], {}
    states = []
    with torch.no_grad():
        for clip in clips:
            features = processor.extract_audio_features([clip])
            states.append(model.encode_audio(features["input_features"], features["input_features_mask"]))
    text_scores, cascade_scores, speech = [], [], {name: [] for name in variants}
    pieces = {"tokens": 0, "multi": 0}
    for (task, item, pool), (state, mask) in zip(items, states):
        scorer = MultipleChoiceScorer(model, processor.tokenizer, FewShotSampler(pool, num_fewshot), 768)
        _, token_ids, _ = unpack_posterior_states(state, mask, projector.window)
        ids = [t for t in token_ids[0].tolist() if t >= 0]
        pieces["tokens"] += len(ids)
        pieces["multi"] += int((projector.bridge_counts[ids] > 1).sum()) if ids else 0
        with torch.no_grad():
            text_scores.append(scorer.score_text(item))
            cascade_scores.append(scorer.score_text(item, whisper_tokenizer.decode(ids).strip()))
            audio = {"audio_encoder_states": state, "audio_encoder_mask": mask,
                     "num_placeholders": int(projector.slot_mask(mask).sum())}
            for name in variants:
                configure(projector, **VARIANTS[name], model=model, tokenizer=processor.tokenizer)
                speech[name].append(scorer.score_speech(item, audio))
    reference = speech[variants[0]]
    rows.append(summarize("text (base LLM)", text_scores, text_scores))
    rows.append(summarize("ASR cascade (lossless pieces)", cascade_scores, text_scores, reference))
    for name in variants:
        rows.append(summarize(name, speech[name], text_scores, reference))
    return rows, pieces, states


def activation_bytes(tensor, weights) -> int:
    """Bytes a tensor saved for backward adds: 0 for parameters and buffers, the stored entries of a sparse one."""
    if tensor.is_sparse:
        return tensor._nnz() * (tensor.element_size() + 8 * tensor.sparse_dim())
    return 0 if tensor.data_ptr() in weights else tensor.numel() * tensor.element_size()


def top_k_costs(model, states, ks=(1, 4, 16, 64, 0), temperature=1.0, batch=4):
    """Relative error of top-k slot embeddings vs the full vocabulary, and forward+backward cost per batch."""
    projector, embeddings = model.multi_modal_projector, model.get_input_embeddings()
    width = max(s.shape[1] for s, _ in states[:batch])
    stacked = torch.zeros(batch, width, states[0][0].shape[-1])
    masks = torch.zeros(batch, width, dtype=torch.bool)
    for i, (s, m) in enumerate(states[:batch]):
        stacked[i, : s.shape[1]], masks[i, : m.shape[1]] = s[0], m[0]
    slot_mask = projector.slot_mask(masks)
    weights = {p.data_ptr() for p in model.parameters()} | {b.data_ptr() for b in model.buffers()}
    configure(projector, temperature=temperature, top_k=0)
    with torch.no_grad():
        full = projector(stacked, masks, embeddings)[slot_mask]
    rows = []
    for k in ks:
        configure(projector, temperature=temperature, top_k=k)
        saved = []
        projector.decoder.requires_grad_(True)
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(activation_bytes(t, weights)) or t,
                                                      lambda t: t):
            out = projector(stacked, masks, embeddings)[slot_mask]
        out.pow(2).mean().backward()
        seconds = time.perf_counter() - start
        projector.zero_grad(set_to_none=True)
        error = ((out.detach() - full).norm(dim=-1) / full.norm(dim=-1).clamp(min=1e-8))
        rows.append({"top_k": k or "full", "rel_err_mean": float(error.mean()), "rel_err_max": float(error.max()),
                     "fwd_bwd_s": seconds, "saved_MB": sum(saved) / 2**20, "slots": int(slot_mask.sum())})
    projector.decoder.requires_grad_(False)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="general_knowledge,known_unknowns")
    parser.add_argument("--voices", default="piper")
    parser.add_argument("--fewshot-pool", type=int, default=10, help="first items of a task are the shot pool")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    parser.add_argument("--audio-cache", default="runs/posterior_fe_audio")
    parser.add_argument("--out", default="runs/posterior_fe.json")
    parser.add_argument("--save-states", default=None, help="folder for each voice's precomputed states (.pt)")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="names of VARIANTS separated by ';' "
                        "(the first is the paired reference)")
    parser.add_argument("--num-fewshot", type=int, default=3)
    parser.add_argument("--skip-top-k", action="store_true", help="skip the top-k truncation timing")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from modeling_salad import build_salad
    from salad_demo.assets import prepare_assets

    torch.manual_seed(0)
    assets = prepare_assets()
    model, processor = build_salad(assets["llm"], assets["whisper"], adapter_type="posterior")
    whisper_tokenizer = AutoTokenizer.from_pretrained(assets["whisper"])
    items = [(task, item, rows[: args.fewshot_pool]) for task, rows in load_items(args.tasks.split(",")).items()
             for item in rows[args.fewshot_pool:][: args.limit]]
    report = {"voices": {}}
    for voice in args.voices.split(","):
        clips = synthesize(voice, [item["question"] for _, item, _ in items], Path(args.audio_cache))
        rows, pieces, states = evaluate_variants(model, processor, whisper_tokenizer, items, clips, args.num_fewshot,
                                                 args.variants.split(";"))
        report["voices"][voice] = {"rows": rows, "pieces": pieces}
        if args.save_states:
            torch.save(states, Path(args.save_states) / f"states_{voice.replace(':', '_')}.pt")
        print(voice, json.dumps(pieces), flush=True)
        for row in rows:
            print(json.dumps(row), flush=True)
        if "top_k" not in report and not args.skip_top_k:
            report["top_k"] = top_k_costs(model, states)
            for row in report["top_k"]:
                print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
