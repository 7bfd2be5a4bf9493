"""Where one demo evaluation's time goes, per clip and per item, on a finished demo folder (CPU, one process).

    .venv/bin/python benchmarks/demo_eval_time.py --run runs/demo [--checkpoint stage1] [--items 8] [--threads 2]

On `--items` held-out items of every eval task, spoken by the seen voice, with the checkpoint's own code:

* prompt length: tokens before the clip's first `<|audio|>` and in all (2-shot speech prompt);
* the speech encoder's frames (`model.encode_frames`), one clip at a time and in batches of 8;
* the adapter's precompute step on those frames (the posterior front end's greedy pass), one clip at a time and in
  batches of 8, and how many clips' greedy tokens the batch changes;
* scoring one item's speech prompt with its states given (`MultipleChoiceScorer.score_speech`).

Prints one JSON object. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def per_clip_seconds(fn, chunks: list) -> tuple[float, list]:
    start = time.perf_counter()
    outputs = [fn(chunk) for chunk in chunks]
    return (time.perf_counter() - start) / sum(len(c) for c in chunks), outputs


def batches(values: list, size: int) -> list[list]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def greedy_tokens(states, mask, window: int) -> list[list[int]]:
    from modeling_salad.posterior_adapter import unpack_posterior_states

    _, tokens, _ = unpack_posterior_states(states, mask, window)
    return [row[row >= 0].tolist() for row in tokens]


@torch.no_grad()
def encoding_rows(model, processor, waves: list) -> dict:
    features = processor.extract_audio_features(waves)
    values, masks = features["input_features"], features["input_features_mask"]

    def frames(rows):
        return model.encode_frames(values[rows[0]:rows[-1] + 1], masks[rows[0]:rows[-1] + 1])

    indices = list(range(len(waves)))
    single_s, _ = per_clip_seconds(frames, batches(indices, 1))
    batch_s, _ = per_clip_seconds(frames, batches(indices, 8))
    states, frame_mask = model.encode_frames(values, masks)

    def precompute(rows):
        return model.precompute_from_frames(states[rows[0]:rows[-1] + 1], frame_mask[rows[0]:rows[-1] + 1])

    pre_single_s, singles = per_clip_seconds(precompute, batches(indices, 1))
    pre_batch_s, batched = per_clip_seconds(precompute, batches(indices, 8))
    row = {"encoder_frames_s_per_clip": {"single": round(single_s, 3), "batch_8": round(batch_s, 3)},
           "precompute_s_per_clip": {"single": round(pre_single_s, 3), "batch_8": round(pre_batch_s, 3)}}
    window = getattr(model.multi_modal_projector, "window", None)
    if window is not None:  # the posterior front end: compare the greedy transcripts
        alone = [greedy_tokens(s, m, window)[0] for s, m in singles]
        together = [t for s, m in batched for t in greedy_tokens(s, m, window)]
        row["clips_whose_greedy_tokens_differ_in_batches"] = sum(a != b for a, b in zip(alone, together))
    return row


def scoring_row(pipeline, model, processor, benchmarks: dict, items_per_task: int) -> dict:
    from evaluation.audio import speech_inputs
    from evaluation.prompts import FewShotSampler
    from evaluation.scorer import MultipleChoiceScorer
    from spans import EncoderStatesCache

    preset, cache = pipeline.preset, EncoderStatesCache()
    spoken = pipeline.evaluator.spoken(preset.seen_voice)
    audio_id = model.config.audio_token_id
    prefix, total, seconds = [], [], 0.0
    for items in benchmarks.values():
        pool, scored = items[:preset.fewshot_pool_size], items[preset.fewshot_pool_size:][:items_per_task]
        scorer = MultipleChoiceScorer(model, processor.tokenizer, FewShotSampler(pool, preset.num_fewshot),
                                      preset.eval_max_length)
        for item in scored:
            inputs = speech_inputs(cache, spoken.clip(item), model, processor)
            ids, _ = scorer.speech_prompt(item, inputs["num_placeholders"])
            prefix.append(ids.index(audio_id))
            total.append(len(ids))
            start = time.perf_counter()
            scorer.score_speech(item, inputs)
            seconds += time.perf_counter() - start
    return {"prompt_tokens_before_audio": round(statistics.mean(prefix), 1),
            "prompt_tokens": round(statistics.mean(total), 1),
            "score_speech_s_per_item": round(seconds / len(total), 3), "items": len(total)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished demo folder (salad-demo --output)")
    parser.add_argument("--checkpoint", default="stage1", help="model folder inside --run")
    parser.add_argument("--items", type=int, default=8, help="held-out items per eval task")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    saved = json.loads((Path(args.run) / "preset.json").read_text())  # the run's preset, its --set values included
    preset = get_preset(saved.pop("name"), saved)
    pipeline = DemoPipeline(preset, args.run)
    model, processor = pipeline.load_model(Path(args.run) / args.checkpoint)
    benchmarks = pipeline.eval_benchmarks()
    spoken = pipeline.evaluator.spoken(preset.seen_voice)
    waves = [spoken.clip(item) for items in benchmarks.values()
             for item in items[preset.fewshot_pool_size:][:args.items]]
    result = {"run": args.run, "checkpoint": args.checkpoint, "threads": args.threads, "clips": len(waves),
              **encoding_rows(model, processor, waves),
              **scoring_row(pipeline, model, processor, benchmarks, args.items)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
