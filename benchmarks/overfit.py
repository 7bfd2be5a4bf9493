"""Overfit check: a tiny random SALAD model distils 16 generated span documents on CPU.

    python benchmarks/overfit.py [--steps 200] [--trainable adapter+llm] [--output_dir /tmp/salad-overfit]

Reports the kd_loss at step 1, the final kd_loss, the relative drop and the first step at which kd_loss fell by
>= 80 %. Goal: >= 80 % within 200 steps.
"""

from __future__ import annotations

import argparse
import json
import time

from trainers.config import TRAINABLE_CHOICES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--trainable", default="adapter+llm", choices=list(TRAINABLE_CHOICES))
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--adapter_learning_rate", type=float, default=3e-3)
    parser.add_argument("--output_dir", default="/tmp/salad-overfit")
    parser.add_argument("--stop_at_target", action="store_true", help="stop once kd_loss fell by >= 80 %%")
    args = parser.parse_args(argv)

    import torch

    from trainers import DistillationConfig, DistillationTrainer
    from trainers.config import DataArguments
    from trainers.data import build_training_dataset
    from trainers.tiny import build_tiny_salad

    torch.set_num_threads(2)
    model, processor = build_tiny_salad(seed=0)
    dataset = build_training_dataset(DataArguments(tiny_documents=args.documents), text_replay_ratio=0.0)
    config = DistillationConfig(
        output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=args.documents,
        learning_rate=args.learning_rate, adapter_learning_rate=args.adapter_learning_rate, weight_decay=0.0,
        lr_scheduler_type="constant", trainable=args.trainable, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, bf16=False, max_length=256, kd_chunk_size=256, disable_tqdm=True,
        speech_policy="all", seed=0)
    from transformers import TrainerCallback

    class StopAtTarget(TrainerCallback):
        def on_log(self, args_, state, control, logs=None, **kwargs):
            kd = [h["kd_loss"] for h in state.log_history if "kd_loss" in h]
            if kd and kd[-1] <= 0.2 * kd[0]:
                control.should_training_stop = True

    trainer = DistillationTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor,
                                  callbacks=[StopAtTarget()] if args.stop_at_target else None)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    kd = [h["kd_loss"] for h in trainer.state.log_history if "kd_loss" in h]
    first_80 = next((i + 1 for i, v in enumerate(kd) if v <= 0.2 * kd[0]), None)
    result = {"steps": len(kd), "kd_loss_step1": kd[0], "kd_loss_final": kd[-1], "drop": 1 - kd[-1] / kd[0],
              "first_step_with_80pct_drop": first_80, "seconds": round(seconds, 1), "trainable": args.trainable}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
