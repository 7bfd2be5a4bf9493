"""SALAD training entry point (Stage I and Stage II).

    accelerate launch trainers/train.py trainers/configs/stage1_3b.yaml [--any_field value ...]
    accelerate launch trainers/train.py --config trainers/configs/tiny.yaml --max_steps 3
    salad-train trainers/configs/tiny.yaml
"""

from __future__ import annotations

import sys

import torch

if __package__ in (None, ""):  # run as a script: make `trainers` importable from the repo root
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.config import DataArguments, DistillationConfig, ModelArguments  # noqa: E402


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


def run_training(argv: list[str] | None = None):
    """Parse `argv` (YAML + overrides), train, save; return the trainer (its state holds the log history)."""
    from trl import TrlParser

    from trainers.data import build_training_dataset, precompute_encoder_states
    from trainers.trainer import DistillationTrainer

    parser = TrlParser((ModelArguments, DataArguments, DistillationConfig))
    model_args, data_args, args = parser.parse_args_and_config(
        args=_normalize_argv(list(sys.argv[1:] if argv is None else argv)))
    model, processor = build_model_and_processor(model_args, seed=args.seed, trust_remote_code=args.trust_remote_code)
    train_dataset = build_training_dataset(data_args, args.text_replay_ratio, seed=args.seed)

    probe = None
    if args.diagnostics_steps:
        probe = [doc for _, doc in zip(range(args.probe_size), iter(train_dataset))]
    collator_cache = None
    if data_args.feature_cache_dir:
        if not data_args.streaming:
            precompute_encoder_states(model, processor, train_dataset, data_args.feature_cache_dir)
        collator_cache = data_args.feature_cache_dir

    from trainers.collator import SpanDocumentCollator

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
    """`salad-train`: exit status 0 after a successful run (a failure raises, which exits nonzero)."""
    run_training(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
