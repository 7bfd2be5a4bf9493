"""A short Stage I run of the posterior front end on the embedded assets: the Whisper decoder trained in full or
with LoRA by SALAD's distillation objective (LLM frozen and its own teacher), held-out metrics before and after.

Training documents: spoken questions of BIG-bench tasks the evaluation never uses, each followed by its written
answer (`" Answer: ..."`, the distilled text), as precomputed states (encoder window + the untrained decoder's
greedy transcript: what the trainer's encoder-state cache holds). Held out: the KD loss on documents of the same
tasks not trained on, and general_knowledge + known_unknowns questions spoken by a voice never trained on:
accuracy, agreement with the base LLM's text answers, mean KL(text choice distribution || spoken one), with the
decoder re-run greedily (what inference does) and with the untrained decoder's transcripts.

    SALAD_CACHE=/work/main/.cache PYTHONPATH=.:benchmarks python benchmarks/posterior_stage1.py --decoder full
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from posterior_front_end import load_items, summarize, synthesize

TRAIN_TASKS = ("strategyqa", "riddle_sense", "physical_intuition")
DECODER_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def encode_clips(model, processor, clips):
    states = []
    with torch.no_grad():
        for clip in clips:
            features = processor.extract_audio_features([clip])
            states.append(model.encode_audio(features["input_features"], features["input_features_mask"]))
    return states


def documents(items, states):
    """Span documents: the spoken question (precomputed states of the real rows) then the written answer."""
    return [{"id": item["id"], "spans": [
        {"text": item["question"], "audio": {"encoder_states": state[0][mask[0]].numpy()}},
        {"text": " Answer: " + item["choices"][item["answer"]].strip(), "audio": None}]}
        for item, (state, mask) in zip(items, states)]


def kd_loss(model, batch):
    """SALAD's objective with alpha = 1 (KD only); the frozen LLM reading the text is the teacher."""
    from trainers.diagnostics import logits_at_positions
    from trainers.losses import salad_objective

    student_keys = ("input_ids", "attention_mask", "audio_encoder_states", "audio_encoder_mask")
    student = logits_at_positions(model, batch["student_positions"], use_cache=False,
                                  **{k: batch[k] for k in student_keys if k in batch})
    with torch.no_grad():
        teacher = logits_at_positions(model.language_model, batch["teacher_positions"], use_cache=False,
                                      input_ids=batch["teacher_input_ids"],
                                      attention_mask=batch["teacher_attention_mask"])
    targets = batch["input_ids"].gather(1, (batch["student_positions"] + 1).clamp(max=batch["input_ids"].shape[1] - 1))
    return salad_objective(student, teacher, targets, batch["distill_mask"], alpha=1.0)[0]


def add_decoder_lora(model, rank: int):
    from peft import LoraConfig, inject_adapter_in_model

    model.multi_modal_projector.decoder.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=DECODER_LORA_TARGETS),
                            model.multi_modal_projector.decoder)


def merge_decoder_lora(model):
    from peft.tuners.lora import LoraLayer

    for module in model.multi_modal_projector.decoder.modules():
        if isinstance(module, LoraLayer):
            module.merge()


def train(model, collator, docs, held_out_docs, args):
    model.language_model.requires_grad_(False)
    params = [p for p in model.multi_modal_projector.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng, history = np.random.default_rng(0), []
    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        batch = collator([docs[i] for i in rng.choice(len(docs), args.batch_size, replace=False)])
        loss = kd_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(round(float(loss), 4))
        print(f"step {step} kd {float(loss):.4f} T {float(model.multi_modal_projector.temperature):.3f}", flush=True)
    return {"train_seconds": time.perf_counter() - start, "trainable_params": sum(p.numel() for p in params),
            "kd_history": history}


def held_out_kd(model, collator, docs, batch_size=5):
    model.eval()
    with torch.no_grad():
        losses = [float(kd_loss(model, collator(docs[i:i + batch_size]))) for i in range(0, len(docs), batch_size)]
    return float(np.mean(losses))


def regreedy(model, states):
    """The same clips' states with the current decoder's greedy transcript (the encoder window is unchanged)."""
    from modeling_salad.posterior_adapter import pack_posterior_states

    projector, fresh = model.multi_modal_projector, []
    from modeling_salad.transcript_adapter import greedy_decode_slots

    with torch.no_grad():
        for state, mask in states:
            window = state[:, :projector.window, :-1]
            num_slots = mask.sum(-1) - projector.window
            _, token_ids = greedy_decode_slots(projector, window, num_slots, projector.prompt_ids,
                                               projector.eos_token_id)
            fresh.append(pack_posterior_states(window, token_ids, num_slots))
    return fresh


def score(model, processor, eval_items, states):
    from evaluation.prompts import FewShotSampler
    from evaluation.scorer import MultipleChoiceScorer

    model.eval()
    text, speech = [], []
    for (task, item, pool), (state, mask) in zip(eval_items, states):
        scorer = MultipleChoiceScorer(model, processor.tokenizer, FewShotSampler(pool, 3), 768)
        count = int(model.multi_modal_projector.slot_mask(mask).sum())
        with torch.no_grad():
            text.append(scorer.score_text(item))
            speech.append(scorer.score_speech(item, {"audio_encoder_states": state, "audio_encoder_mask": mask,
                                                     "num_placeholders": count}))
    return text, speech


def changed_tokens(states, base_states, window) -> float:
    """% of transcript slots whose greedy token differs between two transcripts of the same clips."""
    changed = total = 0
    for (state, _), (base, _) in zip(states, base_states):
        a, b = state[0, window:, -1], base[0, window:, -1]
        changed += int((a != b).sum())
        total += int(((a > 0) | (b > 0)).sum())
    return 100.0 * changed / max(total, 1)


def prepare(model, processor, args):
    """(train docs, held-out docs, eval items, eval states), the audio states cached under `--work-dir`."""
    eval_items = [(task, item, rows[:10]) for task, rows in
                  load_items(("general_knowledge", "known_unknowns")).items() for item in rows[10:][: args.eval_items]]
    items = [item for rows in load_items(TRAIN_TASKS).values() for item in rows]
    items = [items[i] for i in np.random.default_rng(0).permutation(len(items))[: args.train_items + args.kd_items]]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cached = work / f"train_states_{args.train_voice.replace(':', '_')}_{args.train_items}_{args.kd_items}.pt"
    if not cached.exists():
        clips = synthesize(args.train_voice, [item["question"] for item in items], Path(args.audio_cache))
        torch.save(encode_clips(model, processor, clips), cached)
    states = {"train": torch.load(cached)}
    if args.eval_states:  # the same items' states saved by posterior_front_end.py --save-states
        states["eval"] = torch.load(args.eval_states)
    else:
        clips = synthesize(args.eval_voice, [item["question"] for _, item, _ in eval_items], Path(args.audio_cache))
        states["eval"] = encode_clips(model, processor, clips)
    docs = documents(items, states["train"])
    return docs[: args.train_items], docs[args.train_items:], eval_items, states["eval"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", choices=("full", "lora"), default="full")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--train-voice", default="flite:slt")
    parser.add_argument("--eval-voice", default="piper", help="a voice never trained on")
    parser.add_argument("--train-items", type=int, default=40)
    parser.add_argument("--kd-items", type=int, default=10, help="held-out documents of the training tasks")
    parser.add_argument("--eval-items", type=int, default=15, help="per eval task, after its 10-item shot pool")
    parser.add_argument("--audio-cache", default="runs/posterior_fe_audio")
    parser.add_argument("--work-dir", default="runs/posterior_stage1")
    parser.add_argument("--eval-states", default=None, help="posterior_front_end.py's saved states of these items")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--out", default="runs/posterior_stage1.json")
    args = parser.parse_args(argv)
    from modeling_salad import build_salad
    from salad_demo.assets import prepare_assets
    from trainers.collator import SpanDocumentCollator

    torch.manual_seed(0)
    assets = prepare_assets()
    model, processor = build_salad(assets["llm"], assets["whisper"], adapter_type="posterior")
    if args.prepare_only:
        args.eval_states = None
        args.eval_items = 0
    docs, kd_docs, eval_items, eval_states = prepare(model, processor, args)
    if args.prepare_only:
        return
    collator = SpanDocumentCollator(processor, max_length=256, speech_policy="alternate", seed=0)
    text, before = score(model, processor, eval_items, eval_states)
    report = {"args": vars(args), "held_out_kd_before": held_out_kd(model, collator, kd_docs),
              "before": summarize("speech, untrained", before, text)}
    print(json.dumps(report), flush=True)
    if args.decoder == "lora":
        add_decoder_lora(model, args.lora_rank)
    report["train"] = train(model, collator, docs, kd_docs, args)
    if args.decoder == "lora":
        merge_decoder_lora(model)
    report["held_out_kd_after"] = held_out_kd(model, collator, kd_docs)
    report["temperature"] = float(model.multi_modal_projector.temperature.detach())
    fresh = regreedy(model, eval_states)
    report["changed_slot_tokens_pct"] = changed_tokens(fresh, eval_states, model.multi_modal_projector.window)
    _, same_transcript = score(model, processor, eval_items, eval_states)
    _, rerun = score(model, processor, eval_items, fresh)
    report["after_untrained_transcript"] = summarize("speech, untrained decoder's transcript", same_transcript,
                                                     text, before)
    report["after_rerun_greedy"] = summarize("speech, decoder re-run greedily", rerun, text, before)
    print(json.dumps(report), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
