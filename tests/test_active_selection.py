"""Balanced k-means, the selection target and sampling, and M(c) per cluster (selection.active_selection)."""

import numpy as np
import pytest
import torch

from selection.active_selection import (allocate_counts, assign_to_centroids, balanced_kmeans, fit_balanced_kmeans,
                                        probe_texts_by_cluster, sample_within_clusters, score_clusters,
                                        target_distribution)
from trainers.diagnostics import MisalignmentProbe


def _blobs(sizes, dim=8, spread=12.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(len(sizes), dim, generator=g) * spread
    x = torch.cat([centers[i] + torch.randn(n, dim, generator=g) for i, n in enumerate(sizes)])
    truth = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    perm = torch.randperm(len(x), generator=g)
    return x[perm], truth[perm], centers


def test_balanced_kmeans_exact_balance_and_determinism():
    x = torch.randn(1003, 6, generator=torch.Generator().manual_seed(1))
    labels = balanced_kmeans(x, 7, seed=3, batch_size=100)  # batches smaller than N exercise the chunked path
    sizes = torch.bincount(labels, minlength=7)
    assert labels.dtype == torch.long and labels.shape == (1003,)
    assert int(sizes.max() - sizes.min()) <= 1 and int(sizes.sum()) == 1003
    assert torch.equal(labels, balanced_kmeans(x, 7, seed=3, batch_size=100))


def test_balanced_kmeans_balances_skewed_data():
    x, _, _ = _blobs([270, 30], dim=4)
    sizes = torch.bincount(balanced_kmeans(x, 4, seed=0), minlength=4)
    assert sizes.tolist() == [75, 75, 75, 75]


def test_balanced_kmeans_recovers_equal_blobs_and_assigns_new_points():
    x, truth, centers = _blobs([60] * 5)
    result = fit_balanced_kmeans(x, 5, seed=0)
    for c in range(5):  # each cluster is exactly one blob
        assert len(torch.unique(truth[result.labels == c])) == 1
    mapping = {int(truth[result.labels == c][0]): c for c in range(5)}
    new = centers + 0.1
    assert assign_to_centroids(new, result.centroids).tolist() == [mapping[i] for i in range(5)]
    assert torch.equal(result.assign(new), assign_to_centroids(new, result.centroids))


def test_balanced_kmeans_validates_inputs():
    with pytest.raises(ValueError, match="at least k points"):
        balanced_kmeans(torch.randn(3, 2), 4)
    with pytest.raises(ValueError, match="2-D"):
        balanced_kmeans(torch.randn(10), 2)
    with pytest.raises(ValueError, match="match the centroids"):
        assign_to_centroids(torch.randn(4, 3), torch.randn(2, 5))


def test_target_distribution_gamma_zero_is_pool_and_gamma_weights_misalignment():
    pool = np.array([0.5, 0.3, 0.2])
    m = np.array([0.1, 0.4, 2.0])
    assert np.allclose(target_distribution(pool, m, 0.0), pool)
    expected = pool * m**5 / (pool * m**5).sum()
    assert np.allclose(target_distribution(pool, m, 5.0), expected)
    dropped = target_distribution(pool, m, 5.0, keep=[True, True, False])
    assert dropped[2] == 0 and np.isclose(dropped.sum(), 1.0)
    with pytest.raises(ValueError, match="gamma"):
        target_distribution(pool, m, -1.0)


def test_sampled_proportions_follow_target():
    labels = np.repeat(np.arange(4), 500)
    target = target_distribution(np.full(4, 0.25), [0.5, 1.0, 1.5, 2.0], 2.0)
    counts = allocate_counts(target, 600, np.full(4, 500))
    chosen = sample_within_clusters(labels, counts, seed=0)
    assert len(chosen) == len(set(chosen)) == 600
    proportions = np.bincount(labels[chosen], minlength=4) / 600
    assert np.abs(proportions - target).max() < 0.01
    # a cluster that cannot supply its share gives the rest to the others, in proportion
    capped = allocate_counts([0.7, 0.2, 0.1], 100, [10, 100, 100])
    assert capped.tolist()[0] == 10 and capped.sum() == 100 and capped[1] > capped[2]
    assert sample_within_clusters(labels, [2, 0, 0, 0], seed=1, exclude=range(498)) == [498, 499]


def test_probe_documents_concatenate_short_texts_within_a_cluster():
    texts = ["one two three"] * 10 + ["alpha beta gamma delta epsilon"] * 10
    labels = [0] * 10 + [1] * 10
    probes = probe_texts_by_cluster(texts, labels, probe_size=2, min_words=9, seed=0)
    assert set(probes) == {0, 1} and all(len(docs) == 2 for docs in probes.values())
    for c, docs in probes.items():
        for text, ids in docs:
            assert len(text.split()) >= 9 and all(labels[i] == c for i in ids)


# ------------------------------------------------------------------------------------------------- M(c)

STACK = 2


def _frames_for(processor, text, first):
    """Fake encoder frames carrying the transcript's token ids (column 0), STACK frames per token."""
    ids = processor.tokenizer(text if first else " " + text, add_special_tokens=False)["input_ids"]
    frames = np.zeros((len(ids) * STACK, 32), dtype=np.float32)
    frames[:, 0] = np.repeat(ids, STACK)
    return {"encoder_states": frames}


def _speech_model(tiny_salad, exact: bool):
    model, processor = tiny_salad(adapter_type="mlp", stack_factor=STACK)
    embed = model.get_input_embeddings()

    def get_audio_features(input_features=None, input_features_mask=None, audio_encoder_states=None,
                           audio_encoder_mask=None):
        frames = audio_encoder_states[audio_encoder_mask.bool()]  # [frames, D], chunk order
        ids = frames[::STACK, 0].round().long()
        return embed(ids if exact else (ids + 7) % 256)

    model.get_audio_features = get_audio_features
    return model, processor


def _documents(processor):
    pairs = [("the cat sat", "on the warm mat today"), ("stocks fell", "as markets closed lower")]
    return {c: [{"id": f"d{c}", "spans": [{"text": s, "audio": _frames_for(processor, s, True)},
                                          {"text": t, "audio": None}]}] for c, (s, t) in enumerate(pairs)}


def test_misalignment_is_zero_when_speech_path_reproduces_text(tiny_salad):
    model, processor = _speech_model(tiny_salad, exact=True)
    scores = score_clusters(MisalignmentProbe(model, processor), _documents(processor), progress=False)
    assert set(scores) == {0, 1}
    assert all(abs(v) < 1e-6 for v in scores.values())


def test_misalignment_is_positive_when_speech_differs(tiny_salad):
    model, processor = _speech_model(tiny_salad, exact=False)
    scores = score_clusters(MisalignmentProbe(model, processor), _documents(processor), progress=False)
    assert all(v > 1e-4 for v in scores.values())


def test_any_scorer_with_a_misalignment_method_scores_clusters():
    class WordCount:
        def misalignment(self, documents):
            return float(sum(len(s["text"].split()) for d in documents for s in d["spans"]))

    docs = {0: [{"id": "a", "spans": [{"text": "one two", "audio": {"bytes": b"x"}}]}],
            1: [{"id": "b", "spans": [{"text": "text only", "audio": None}]}]}
    assert score_clusters(WordCount(), docs, progress=False) == {0: 2.0}  # no audio: cluster left out
