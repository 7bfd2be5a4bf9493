"""Written numbers in spoken arithmetic: where Whisper writes digits and where it writes words, and what it costs.

    python benchmarks/number_forms.py split runs/demo/eval/salad-init [--task arithmetic:1_digit_multiplication]
    python benchmarks/number_forms.py posterior "What is 0 times 8?" "What is 1 times 3?" [--voice flite:slt]
    python benchmarks/number_forms.py digit-bias runs/demo runs/demo/salad-init --delta 1.0
    python benchmarks/number_forms.py transcribe runs/demo/salad-init runs/demo/stage1 --text "What is 8 times 4?"
    python benchmarks/number_forms.py numeral-bias runs/demo runs/demo/salad-init --value 0.82 --value 1.5

`numeral-bias` sets a posterior checkpoint's one numeral bias (`posterior_numeral_bias`) to each VALUE by hand and
scores every held-out item by speech on both eval voices: accuracy and the mean text->speech choice KL per task, the
most that training this one scalar could reach on the held-out items (a ceiling read off the test items, so a
measurement, never a recipe).

`digit-bias` adds DELTA by hand to a posterior checkpoint's logit bias on Whisper's digit tokens (" 0".." 9",
"0".."9") and scores the demo's arithmetic items by speech on both eval voices: how far a learned bias would have to
move for the transcripts to change form, and what that would be worth (a measurement, not a recipe).

`transcribe` speaks each text with a voice and prints the greedy transcript that each posterior checkpoint's own
front end reads (its decoder and learned biases), to see which written forms training changed.

`split` reads a `salad-eval`/demo prediction folder (VOICE/predictions/*.jsonl, with the cascade's transcripts) and
splits one task's items by whether the transcript spells a number as a word: speech and base-text accuracy per
part. `posterior` speaks each text with a TTS voice and prints Whisper tiny.en's greedy transcript with the two
most likely tokens of every step (the digit and the word form of a number are often the top two).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
NUMBER_WORDS = re.compile(r"\b(zero|one|two|three|four|five|six|seven|eight|nine|ten)\b", re.I)


def split_by_number_form(records: list[dict]) -> dict[str, dict]:
    """{"words"|"digits": {"n", "speech_acc", "base_text_acc"}} over prediction records with a cascade transcript."""
    parts: dict[str, list[dict]] = {"words": [], "digits": []}
    for record in records:
        words = NUMBER_WORDS.search(record["cascade"]["transcript"] or "")
        parts["words" if words else "digits"].append(record)
    return {name: {"n": len(rows),
                   "speech_acc": 100 * sum(r["speech"]["correct"] for r in rows) / len(rows) if rows else None,
                   "base_text_acc": 100 * sum(r["base_text"]["correct"] for r in rows) / len(rows) if rows else None}
            for name, rows in parts.items()}


def run_split(folder: Path, task: str) -> None:
    from salad_demo.demo_data import read_jsonl

    for voice in sorted(p.name for p in folder.iterdir() if (p / "predictions").is_dir()):
        records = read_jsonl(folder / voice / "predictions" / f"{task}.jsonl")
        for name, part in split_by_number_form(records).items():
            print(f"{voice}\t{name}\tn={part['n']}\tspeech {part['speech_acc']:.1f}\tbase text "
                  f"{part['base_text_acc']:.1f}")


def run_posterior(texts: list[str], voice: str) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from datasets_scripts.tts.registry import get_backend
    from salad_demo.assets import prepare_assets

    path = prepare_assets()["whisper"]
    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    engine, _, name = voice.partition(":")
    backend = get_backend(engine)
    for text in texts:
        wave, rate = backend.synthesize(text, name or None)
        features = processor(wave, sampling_rate=rate, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(features, return_dict_in_generate=True, output_scores=True, max_new_tokens=40)
        print(f"{text!r} -> {processor.decode(out.sequences[0], skip_special_tokens=True)!r}")
        for scores in out.scores:
            top = torch.softmax(scores[0].float(), -1).topk(2)
            print("   " + "  ".join(f"{processor.tokenizer.decode([int(i)])!r} {float(p):.2f}"
                                    for p, i in zip(top.values, top.indices)))


def own_transcript(model, processor, wave, rate: int, whisper_tokenizer) -> str:
    """The greedy transcript a posterior checkpoint's front end feeds the LLM for one clip."""
    import torch

    from modeling_salad.posterior_adapter import unpack_posterior_states

    inputs = processor(text=["<|audio|>"], audio=[wave], sampling_rate=rate)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
    _, tokens, _ = unpack_posterior_states(states, mask, model.multi_modal_projector.window)
    return whisper_tokenizer.decode(tokens[0][tokens[0] >= 0].tolist())


def run_transcribe(checkpoints: list[Path], texts: list[str], voices: list[str]) -> None:
    from transformers import AutoTokenizer

    from datasets_scripts.tts.registry import get_backend
    from modeling_salad.loading import load_salad
    from salad_demo.assets import prepare_assets

    whisper_tokenizer = AutoTokenizer.from_pretrained(prepare_assets()["whisper"])
    for checkpoint in checkpoints:
        model, processor = load_salad(checkpoint)
        for voice in voices:
            engine, _, name = voice.partition(":")
            for text in texts:
                wave, rate = get_backend(engine).synthesize(text, name or None)
                transcript = own_transcript(model.eval(), processor, wave, rate, whisper_tokenizer)
                print(f"{checkpoint}\t{voice}\t{text!r} -> {transcript!r}")


def add_digit_bias(model, tokenizer, delta: float) -> int:
    """Add `delta` to the posterior front end's logit bias on every one-token digit; returns tokens moved."""
    import torch

    bias = getattr(model.multi_modal_projector, "logit_bias", None)
    if bias is None:
        raise SystemExit("this checkpoint's front end has no logit bias (posterior_logit_bias=False)")
    ids = {ids[0] for d in range(10) for form in (f" {d}", f"{d}")
           if len(ids := tokenizer.encode(form, add_special_tokens=False)) == 1}
    with torch.no_grad():
        bias[sorted(ids)] += delta
    return len(ids)


def demo_run_and_model(run: Path, checkpoint: Path):
    """(the demo pipeline of run folder `run`, with its eval sets and caches; the checkpoint's model; its processor)."""
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    pipeline = DemoPipeline(get_preset(json.loads((run / "preset.json").read_text())["name"]), run)
    model, processor = pipeline.load_model(checkpoint)
    return pipeline, model, processor


def run_digit_bias(run: Path, checkpoint: Path, delta: float, task: str) -> None:
    from transformers import WhisperTokenizer

    pipeline, model, processor = demo_run_and_model(run, checkpoint)
    benchmarks = {name: items for name, items in pipeline.eval_benchmarks().items() if name == task}
    moved = add_digit_bias(model, WhisperTokenizer.from_pretrained(pipeline.assets["whisper"]), delta)
    for voice in (pipeline.preset.seen_voice, pipeline.preset.unseen_voice):
        result = pipeline.evaluator.evaluate(model, processor, benchmarks, voice, modes=("speech",))
        records = result["predictions"][task]
        correct = [r["speech"]["correct"] for r in records]
        print(f"{voice}\tdelta {delta:+.2f} on {moved} digit tokens\tspeech {100 * sum(correct) / len(correct):.1f}"
              f"\tn={len(correct)}\tcorrect ids: {','.join(r['id'] for r in records if r['speech']['correct'])}")


def set_numeral_bias(model, value: float) -> None:
    """Set the posterior front end's numeral bias (the one scalar `posterior_numeral_bias` learns) to `value`."""
    import torch

    bias = getattr(model.multi_modal_projector, "numeral_bias", None)
    if bias is None:
        raise SystemExit("this checkpoint's front end has no numeral bias (posterior_numeral_bias=False)")
    with torch.no_grad():
        bias.fill_(value)


def kl_and_accuracy(records: list[dict]) -> tuple[float, float]:
    """(speech accuracy in percent, mean choice KL(base text || speech)) of prediction records."""
    from evaluation.compare import choice_kl

    kls = [choice_kl(r["base_text"]["logprobs"], r["speech"]["logprobs"]) for r in records]
    return 100 * sum(r["speech"]["correct"] for r in records) / len(records), sum(kls) / len(kls)


def run_numeral_bias(run: Path, checkpoint: Path, values: list[float]) -> None:
    pipeline, model, processor = demo_run_and_model(run, checkpoint)
    benchmarks = pipeline.eval_benchmarks()
    for value in values:
        set_numeral_bias(model, value)
        for voice in (pipeline.preset.seen_voice, pipeline.preset.unseen_voice):
            result = pipeline.evaluator.evaluate(model, processor, benchmarks, voice, modes=("text", "speech"))
            every = [r for records in result["predictions"].values() for r in records]
            parts = [f"{task} acc {acc:.1f} KL {kl:.3f}" for task, records in result["predictions"].items()
                     for acc, kl in [kl_and_accuracy(records)]]
            acc, kl = kl_and_accuracy(every)
            print(f"bias {value:+.2f}\t{voice}\tall: acc {acc:.1f} KL {kl:.3f}\t" + "\t".join(parts), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="accuracy by the written form of numbers in the transcripts")
    split.add_argument("folder", type=Path, help="evaluation folder holding VOICE/predictions/")
    split.add_argument("--task", default="arithmetic:1_digit_multiplication")
    posterior = sub.add_parser("posterior", help="Whisper's top-2 tokens per step on spoken texts")
    posterior.add_argument("texts", nargs="+")
    posterior.add_argument("--voice", default="flite:slt")
    digit = sub.add_parser("digit-bias", help="arithmetic speech accuracy with a hand-set bias on digit tokens")
    digit.add_argument("run", type=Path, help="demo run folder (its preset, eval sets and caches)")
    digit.add_argument("checkpoint", type=Path, help="posterior checkpoint with a logit bias")
    digit.add_argument("--delta", type=float, default=1.0)
    digit.add_argument("--task", default="arithmetic:1_digit_multiplication")
    numeral = sub.add_parser("numeral-bias", help="held-out accuracy and choice KL at hand-set numeral biases")
    numeral.add_argument("run", type=Path, help="demo run folder (its preset, eval sets and caches)")
    numeral.add_argument("checkpoint", type=Path, help="posterior checkpoint with a numeral bias")
    numeral.add_argument("--value", type=float, action="append", required=True, help="bias value (repeatable)")
    transcribe = sub.add_parser("transcribe", help="each posterior checkpoint's own greedy transcript")
    transcribe.add_argument("checkpoints", type=Path, nargs="+")
    transcribe.add_argument("--text", action="append", required=True, help="text to speak (repeatable)")
    transcribe.add_argument("--voice", action="append", help="TTS voice (repeatable; default flite:slt and piper)")
    args = parser.parse_args(argv)
    if args.command == "split":
        run_split(args.folder, args.task)
    elif args.command == "posterior":
        run_posterior(args.texts, args.voice)
    elif args.command == "numeral-bias":
        run_numeral_bias(args.run, args.checkpoint, args.value)
    elif args.command == "transcribe":
        run_transcribe(args.checkpoints, args.text, args.voice or ["flite:slt", "piper"])
    else:
        run_digit_bias(args.run, args.checkpoint, args.delta, args.task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
