"""SALAD training entry point (Stage I and Stage II).

    accelerate launch trainers/train.py trainers/configs/stage1_3b.yaml [--any_field value ...]
    accelerate launch trainers/train.py --config trainers/configs/tiny.yaml --max_steps 3
    salad-train trainers/configs/tiny.yaml

From Python, the same run without a YAML file:

    from trainers.train import train
    trainer = train(DistillationConfig(output_dir="runs/x", ...), ModelArguments(...), DataArguments(...))
"""

from __future__ import annotations

import sys

import torch

if __package__ in (None, ""):  # run as a script: make `trainers` importable from the repo root
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.config import DataArguments, DistillationConfig, ModelArguments  # noqa: E402

__all__ = ["train", "parse_train_args", "build_model_and_processor", "main"]


def build_model_and_processor(model_args: ModelArguments, seed: int = 0, trust_remote_code: bool = False):
    """A SALAD checkpoint, a new model from a text LLM + speech encoder, or a tiny random one. A checkpoint's own
    code runs only when it is the installed modeling_salad or `trust_remote_code` allows it."""
    from modeling_salad import build_salad
    from modeling_salad.loading import load_salad

    dtype = model_args.dtype if model_args.dtype == "auto" else getattr(torch, model_args.dtype)
    if model_args.tiny_random:
        from trainers.tiny import build_tiny_salad

        return build_tiny_salad(seed=seed)
    if model_args.model_name_or_path:
        return load_salad(model_args.model_name_or_path, trust_remote_code, dtype=dtype)
    if not (model_args.text_model_name_or_path and model_args.audio_encoder_name_or_path):
        raise ValueError("give model_name_or_path, or text_model_name_or_path + audio_encoder_name_or_path, "
                         "or tiny_random: true")
    adapter = {"adapter_type": model_args.adapter_type, "adapter_num_layers": model_args.adapter_num_layers,
               "adapter_hidden_size": model_args.adapter_hidden_size}
    if model_args.stack_factor is not None:
        adapter["stack_factor"] = model_args.stack_factor
    return build_salad(model_args.text_model_name_or_path, model_args.audio_encoder_name_or_path,
                       dtype=torch.float32 if dtype == "auto" else dtype, **adapter)


def _normalize_argv(argv: list[str]) -> list[str]:
    """Accept a YAML path as the first positional argument (same as --config <path>). Several processes on a
    machine without an accelerator (e.g. `accelerate launch --multi_gpu` on CPU) train as multi-CPU DDP."""
    import os

    if argv and argv[0].endswith((".yaml", ".yml")) and not argv[0].startswith("-"):
        argv = ["--config", argv[0], *argv[1:]]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv = [*argv, "--use_cpu", "true"]
    return argv


def parse_train_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, DistillationConfig]:
    """A YAML config (positional or --config) plus `--field value` overrides -> the three argument dataclasses."""
    from trl import TrlParser

    parser = TrlParser((ModelArguments, DataArguments, DistillationConfig))
    return parser.parse_args_and_config(args=_normalize_argv(list(sys.argv[1:] if argv is None else argv)))


def _probe_documents(args: DistillationConfig, train_dataset) -> list[dict] | None:
    if not args.diagnostics_steps:
        return None
    return [doc for _, doc in zip(range(args.probe_size), iter(train_dataset))]


def train(args: DistillationConfig, model_args: ModelArguments, data_args: DataArguments):
    """Build the model and the data from the arguments, train, save into `args.output_dir` (and push when asked).
    Returns the `DistillationTrainer` (its `state.log_history` holds the logged losses and diagnostics)."""
    from spans import EncoderStatesCache

    from trainers.collator import SpanDocumentCollator
    from trainers.data import build_training_dataset
    from trainers.trainer import DistillationTrainer

    model, processor = build_model_and_processor(model_args, seed=args.seed, trust_remote_code=args.trust_remote_code)
    train_dataset = build_training_dataset(data_args, args.text_replay_ratio, seed=args.seed)
    probe = _probe_documents(args, train_dataset)
    collator_cache = None
    if data_args.feature_cache_dir:  # filled by the trainer with the clips its steps hear, before the first one
        collator_cache = EncoderStatesCache.for_model(model, processor, data_args.feature_cache_dir)
    collator = SpanDocumentCollator(processor, max_length=args.max_length, padding_side=args.padding_side,
                                    speech_policy=args.speech_policy, speech_probability=args.speech_probability,
                                    seed=args.seed, pad_to_multiple_of=args.pad_to_multiple_of,
                                    encoder_cache=collator_cache)
    trainer = DistillationTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
                                  data_collator=collator, probe_documents=probe)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if args.push_to_hub:
        trainer.push_to_hub()
    return trainer


def main(argv: list[str] | None = None) -> int:
    model_args, data_args, args = parse_train_args(argv)
    train(args, model_args, data_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
