"""A training run encodes, before its first step, exactly the clips its steps make the student hear."""

import pytest

from trainers import DistillationTrainer
from trainers.clip_states import batches_read
from trainers.collator import SpanDocumentCollator
from trainers.config import DataArguments
from trainers.data import build_training_dataset
from trainers.tiny import build_tiny_salad

from test_trainer import make_args

pytestmark = pytest.mark.timeout(300)


class RecordingCollator(SpanDocumentCollator):
    """Records each collated batch's document ids and whether every heard clip came from the cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.raw_clips = [], 0

    def _clip(self, audio):
        clip, count = super()._clip(audio)
        self.raw_clips += clip.ndim == 1  # a waveform: the cache had no states for it
        return clip, count

    def __call__(self, documents):
        self.batches.append([d["id"] for d in documents])
        return super().__call__(documents)


def _trainer(tmp_path, max_steps, cache=True, **overrides):
    from spans import EncoderStatesCache

    model, processor = build_tiny_salad()
    dataset = build_training_dataset(DataArguments(tiny_documents=9), text_replay_ratio=0.0)
    encoder_cache = EncoderStatesCache.for_model(model, processor, tmp_path / "cache") if cache else None
    collator = RecordingCollator(processor, max_length=128, seed=0, encoder_cache=encoder_cache)
    args = make_args(tmp_path, max_steps=max_steps, **overrides)
    return DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                               data_collator=collator), dataset


def _heard_clips(collator, dataset, ids, epoch=0):
    collator.set_epoch(epoch)
    by_id = {d["id"]: d for d in dataset}
    return sum(len(collator.heard_audio(by_id[i])) for i in ids)


def test_only_the_heard_clips_of_the_batches_the_steps_read_are_encoded_and_training_reads_them(tmp_path):
    trainer, dataset = _trainer(tmp_path, max_steps=2)
    trainer.train()
    collator, cached = trainer.data_collator, len(list((tmp_path / "cache").glob("*.npz")))
    assert collator.raw_clips == 0  # every clip a step heard came from the cache
    read = [i for batch in collator.batches for i in batch]
    assert 0 < cached == _heard_clips(collator, dataset, read)
    spoken = sum(span["audio"] is not None for d in dataset for span in d["spans"])
    assert cached < spoken  # 2 steps of 2 (and the prefetched batch) read 6 of the 9 documents


def test_the_replayed_order_is_the_trainers_own_across_epochs(tmp_path):
    trainer, dataset = _trainer(tmp_path, max_steps=7, cache=False)  # 5 batches per epoch: two epochs
    loader = trainer.get_train_dataloader()
    planned = batches_read(loader, trainer.args)
    trainer.train()
    ids = [[dataset[i]["id"] for i in batch] for _, batch in planned]
    assert [epoch for epoch, _ in planned] == [0] * 5 + [1] * 3
    assert trainer.data_collator.batches[:len(ids)] == ids


def test_gradient_accumulation_reads_that_many_batches_per_step(tmp_path):
    trainer, _ = _trainer(tmp_path, max_steps=2, cache=False, gradient_accumulation_steps=2)
    planned = batches_read(trainer.get_train_dataloader(), trainer.args)
    assert len(planned) == 2 * 2 + 1
