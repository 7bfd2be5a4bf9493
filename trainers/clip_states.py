"""Encoder states of the clips a training run will hear, computed in batches before its first step.

A run of ``max_steps`` reads only the batches its sampler yields for those steps, and the student hears only the
spans the collator picks, so only those clips are encoded: a short run over a large dataset encodes a fraction of
it. The order is the trainer's own DataLoader's, replayed epoch by epoch without collating (accelerate's seedable
sampler draws each epoch's order from ``seed + epoch``).
"""

from __future__ import annotations

import itertools
import math

__all__ = ["batches_read", "precompute_heard_clips"]


def batches_read(loader, args) -> list[tuple[int, list[int]]] | None:
    """(epoch, dataset indices) of every batch the run's steps read, plus the one the loader prefetches after the
    last; None when the loader's order cannot be replayed (no epoch-seeded sampler)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    if not hasattr(getattr(batch_sampler, "sampler", None), "set_epoch") or not hasattr(loader, "set_epoch"):
        return None
    per_epoch = len(batch_sampler)
    if per_epoch == 0:
        return []
    wanted = (args.max_steps * args.gradient_accumulation_steps + 1 if args.max_steps > 0
              else math.ceil(args.num_train_epochs) * per_epoch)
    saved, batches = getattr(loader, "iteration", 0), []
    try:
        for epoch in range(math.ceil(wanted / per_epoch)):
            loader.set_epoch(epoch)
            batches += [(epoch, list(b)) for b in itertools.islice(iter(batch_sampler), wanted - len(batches))]
    finally:
        loader.set_epoch(saved)
    return batches


def _heard_waves(collator, dataset, batches):
    from modeling_salad import SAMPLING_RATE, load_audio

    saved = collator.epoch
    try:
        for epoch, indices in batches:
            collator.set_epoch(epoch)
            for index in indices:
                for audio in collator.heard_audio(dataset[index]):
                    yield load_audio(audio, sampling_rate=SAMPLING_RATE)
    finally:
        collator.set_epoch(saved)


def precompute_heard_clips(trainer, loader) -> int:
    """Encode (into the collator's encoder cache) the clips the student hears in the batches `loader` will give
    `trainer`'s steps, and every clip of its probe documents; returns clips written. Without a replayable order,
    every clip of the dataset is encoded; a dataset without a length (streaming) is left to the collator."""
    from tqdm.auto import tqdm

    collator, dataset = trainer.data_collator, trainer.train_dataset
    cache = getattr(collator, "encoder_cache", None)
    if cache is None or not hasattr(collator, "heard_audio") or not hasattr(dataset, "__len__"):
        return 0
    model, processor = trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class
    was_training = model.training
    model.eval()
    try:
        written = cache.precompute(model, processor, trainer.probe_documents) if trainer.probe_documents else 0
        batches = batches_read(loader, trainer.args)
        if batches is None:
            return written + cache.precompute(model, processor, dataset)
        batches = tqdm(batches, desc="encoder states (clips the run hears)", unit="batch")
        return written + cache.precompute_clips(model, processor, _heard_waves(collator, dataset, batches))
    finally:
        model.train(was_training)
