"""`salad-export`: turn a SALAD checkpoint into a Hub-ready model folder with a model card.

The folder is self-contained (full safetensors weights, the remote-code files, the processor) and carries a
README.md rendered from `model_cards/model_card.md.j2`: YAML front matter, full parameter count and memory per
dtype, usage with `AutoModel`/`AutoProcessor` and `trust_remote_code=True`, the training stages, the evaluation
table of `salad-eval`'s `results.json`, and limitations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from spans import staging_dir

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0, "4-bit": 0.5}
DEFAULT_TRAINING = (
    "Stage I: cross-modal distillation — the student hears some spans of a document and reads the rest, the "
    "frozen text LLM reads it all as text, and the student matches the teacher's next-token distribution at "
    "every text position (KL(teacher ‖ student)), with text-only replay. Stage II: continued distillation on "
    "speech synthesized for the text clusters where the Stage I model's speech–text misalignment is highest."
)


def parameter_counts(model) -> dict[str, int]:
    counts = {
        "audio encoder (frozen)": sum(p.numel() for p in model.audio_tower.parameters()),
        "adapter": sum(p.numel() for p in model.multi_modal_projector.parameters()),
        "language model": sum(p.numel() for p in model.language_model.parameters()),
    }
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def evaluation_table(results: dict) -> str:
    """Markdown table of a `salad-eval` results.json (accuracies in percent, rounded for reading)."""
    columns = [("base_text_acc", "base LLM text"), ("text_acc", "SALAD text"), ("speech_acc", "SALAD speech"),
               ("cascade_acc", "ASR cascade"), ("gap", "gap")]
    rows = dict(results.get("benchmarks", {}))
    if results.get("average"):
        rows["**average**"] = results["average"]
    if not rows:
        return ""
    present = [(key, title) for key, title in columns if any(r.get(key) is not None for r in rows.values())]
    lines = ["| task | n | " + " | ".join(title for _, title in present) + " |",
             "|---|---|" + "---|" * len(present)]
    for name, r in rows.items():
        cells = ["" if r.get(key) is None else f"{r[key]:.1f}" for key, _ in present]
        lines.append(f"| {name} | {r.get('n', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_card(model, *, name: str, repo_id: str, results: dict | None, datasets: list[str],
               training: str, license: str, limitations: list[str]) -> str:
    import torch
    import transformers

    config = model.config
    base = getattr(config, "base_text_model", None) or "unknown"
    counts = parameter_counts(model)
    adapter = (f"{config.adapter_num_layers}-layer causal transformer adapter (width {config.adapter_hidden_size})"
               if config.adapter_type == "transformer" else
               f"frame-stacking (×{config.stack_factor}) SwiGLU MLP adapter")
    from model_cards import render

    return render(
        "model_card.md.j2", name=name, repo_id=repo_id, license=license,
        base_models=[base], base_text_model=base,
        base_text_model_url=base if os.path.isdir(str(base)) else f"https://huggingface.co/{base}",
        datasets=datasets, audio_encoder=getattr(config.audio_config, "model_type", "audio encoder"),
        adapter_description=adapter, parameters=counts,
        memory={dtype: counts["total"] * b / 2**30 for dtype, b in BYTES_PER_PARAM.items()},
        training=training, evaluation_table=evaluation_table(results or {}), limitations=limitations,
        transformers_version=transformers.__version__, torch_version=torch.__version__,
    )


def export_model(checkpoint: str | os.PathLike, output: str | os.PathLike, *, repo_id: str | None = None,
                 results: dict | None = None, datasets: list[str] | None = None, training: str = DEFAULT_TRAINING,
                 license: str = "apache-2.0", limitations: list[str] | None = None, overwrite: bool = False,
                 trust_remote_code: bool = False) -> Path:
    """Write `output/` (model, processor, remote code, README.md) from a checkpoint folder; atomic.

    The checkpoint's code runs only when it is the installed modeling_salad or `trust_remote_code` allows it."""
    from modeling_salad.loading import load_salad

    checkpoint, output = Path(checkpoint), Path(output)
    if not (checkpoint / "config.json").is_file():
        raise ValueError(f"{checkpoint} is not a SALAD checkpoint folder (no config.json)")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    model, processor = load_salad(checkpoint, trust_remote_code)
    card = build_card(model, name=output.name, repo_id=repo_id or f"org/{output.name}", results=results,
                      datasets=datasets or [], training=training, license=license, limitations=limitations or [])
    with staging_dir(output) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "README.md").write_text(card)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="salad-export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a SALAD checkpoint folder (e.g. runs/x/checkpoint-100 or a final output)")
    parser.add_argument("output", help="the Hub-ready model folder to write")
    parser.add_argument("--repo-id", help="Hub id shown in the card's usage example")
    parser.add_argument("--results", help="salad-eval results.json whose table goes into the card")
    parser.add_argument("--dataset", action="append", default=[], help="training dataset id (repeatable)")
    parser.add_argument("--training-notes", help="a text/markdown file describing the training run")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own code even when it is not the installed modeling_salad")
    args = parser.parse_args(argv)
    try:
        results = json.loads(Path(args.results).read_text()) if args.results else None
        training = Path(args.training_notes).read_text() if args.training_notes else DEFAULT_TRAINING
        out = export_model(args.checkpoint, args.output, repo_id=args.repo_id, results=results,
                           datasets=args.dataset, training=training, license=args.license, overwrite=args.overwrite,
                           trust_remote_code=args.trust_remote_code)
    except (ValueError, OSError) as error:
        print(f"salad-export: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} (publish with: salad-publish {out} {args.repo_id or 'ORG/NAME'} --repo-type model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
