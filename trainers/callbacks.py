"""Trainer callbacks: epoch seeding of the collator, the pre-decay checkpoint, M/F diagnostics."""

from __future__ import annotations

import os

from transformers import TrainerCallback

__all__ = ["EpochToCollatorCallback", "PreDecayCheckpointCallback", "DiagnosticsCallback", "PRE_DECAY_DIR"]

PRE_DECAY_DIR = "checkpoint-pre-decay"


class EpochToCollatorCallback(TrainerCallback):
    """Re-seed the collator's speech/text decisions at every epoch (deterministic per doc id + epoch)."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.collator, "set_epoch"):
            self.collator.set_epoch(int(state.epoch or 0))


class PreDecayCheckpointCallback(TrainerCallback):
    """Save ``<output_dir>/checkpoint-pre-decay`` at the step where the WSD decay starts (Stage II starts there)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps <= 0:
            return
        start = self.trainer.decay_start_step(state.max_steps)
        if state.global_step == start and start > 0:
            from .saving import save_folder_staged

            def write(folder):
                self.trainer.save_model(str(folder))
                if args.should_save:
                    state.save_to_json(os.path.join(folder, "trainer_state.json"))

            save_folder_staged(self.trainer, os.path.join(args.output_dir, PRE_DECAY_DIR), write)


class DiagnosticsCallback(TrainerCallback):
    """Every ``diagnostics_steps``: log M (misalignment) and F (forgetting) on a fixed probe set."""

    def __init__(self, trainer, probe_documents):
        self.trainer = trainer
        self.probe_documents = list(probe_documents)

    def compute(self) -> dict[str, float]:
        from .diagnostics import forgetting, misalignment

        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        collator = trainer.data_collator
        metrics = {}
        try:
            metrics["misalignment"] = misalignment(model, trainer.processing_class, self.probe_documents, collator)
        except ValueError:  # probe set without speech
            pass
        metrics["forgetting"] = forgetting(model, trainer._teacher_module(), trainer.processing_class,
                                           self.probe_documents, collator)
        return metrics

    def on_step_end(self, args, state, control, **kwargs):
        steps = args.diagnostics_steps
        if steps and state.global_step % steps == 0:
            metrics = self.compute()
            for name, value in metrics.items():
                self.trainer._metrics["train"][name].append(value)
            control.should_log = True
