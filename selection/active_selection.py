"""Stage II active selection (paper §3.3): balanced k-means, misalignment-driven target, sampling within clusters.

The pipeline around these functions (embedding, TTS probes, the dataset writer) lives in
:mod:`selection.steps`; everything here is pure computation on tensors and lists so it can be tested
without models.

Balanced k-means algorithm (``fit_balanced_kmeans``)
----------------------------------------------------
Lloyd iterations whose assignment step is an *exactly balanced* assignment (every cluster gets ``N // k`` or
``N // k + 1`` points), computed without ever holding the full ``N × k`` distance matrix:

1. **Priced costs.** ``cost(x, c) = |c|² − 2 x·c + u_c`` (``|x|²`` is constant per point and dropped), where
   ``u_c`` is a per-cluster *price* (the dual variable of the capacity constraint of the assignment LP). Costs
   are computed ``batch_size`` rows at a time; only the best and second-best cluster per point are kept.
2. **Capacity-constrained greedy on margins (exact balancing).** Every unassigned point proposes to its cheapest
   cluster that still has room. A cluster with more proposals than room keeps the proposals with the largest
   *margin* (second-best cost − best cost: the points that lose most by moving) and is then full; rejected
   points propose again among the clusters that are not full. Each round fills at least one cluster, so there
   are at most ``k`` rounds, and the later rounds only touch the rejected points. Capacities are ``N // k``
   for every cluster first; the ``N mod k`` leftover points are then placed with capacity one per cluster, so
   sizes differ by at most one.
3. **Price update (auction step).** Clusters that were over-subscribed in the first round get a higher price,
   under-subscribed ones a lower one (step ∝ the relative excess × the mean best-cost gap, decaying over
   iterations). With good prices the plain priced argmin is already balanced, so step 2 has little to repair.
4. **Centroid update** with ``index_add_`` over the same batches (float32 accumulation).

Initialization is k-means++ on a seeded subsample. Everything runs on ``device`` (default: the GPU when there is
one), streaming batches of the (possibly CPU-resident) embedding matrix there, so 10M × 1024 fits on one GPU.
Ties are broken by index through stable sorts, so a seed gives the same labels on the same hardware.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

__all__ = [
    "BalancedKMeansResult",
    "fit_balanced_kmeans",
    "balanced_kmeans",
    "assign_to_centroids",
    "target_distribution",
    "allocate_counts",
    "sample_within_clusters",
    "MisalignmentScorer",
    "score_clusters",
]


@dataclass
class BalancedKMeansResult:
    """Outcome of :func:`fit_balanced_kmeans`: ``labels`` LongTensor[N] (CPU), ``centroids`` Tensor[k, D] float32
    (CPU), the mean squared distance of points to their centroid, and the Lloyd iterations run."""

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float
    iterations: int

    def assign(self, embeddings: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
        """Nearest centroid (unbalanced) for new embeddings; see :func:`assign_to_centroids`."""
        return assign_to_centroids(embeddings, self.centroids, batch_size=batch_size)


def _validate(embeddings: torch.Tensor, k: int, batch_size: int) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        raise ValueError(f"embeddings must be a 2-D tensor [N, D], got {type(embeddings).__name__} "
                         f"with shape {tuple(getattr(embeddings, 'shape', ()))}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    n = embeddings.shape[0]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} clusters need at least k points, got N={n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


def _default_device(embeddings: torch.Tensor) -> torch.device:
    if embeddings.device.type != "cpu":
        return embeddings.device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def _kmeans_plus_plus(sample: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on ``sample`` [S, D] (already on the compute device, float32) -> [k, D]."""
    s = sample.shape[0]
    first = int(torch.randint(s, (1,), generator=generator).item())
    centroids = [sample[first]]
    closest = ((sample - sample[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: fill with seeded random picks
            idx = int(torch.randint(s, (1,), generator=generator).item())
        else:
            probs = (closest / total).double().cpu()
            idx = int(torch.multinomial(probs, 1, generator=generator).item())
        centroids.append(sample[idx])
        closest = torch.minimum(closest, ((sample - sample[idx]) ** 2).sum(1))
    return torch.stack(centroids)


def _priced_top2(chunk: torch.Tensor, centroids: torch.Tensor, centroid_sq: torch.Tensor, prices: torch.Tensor,
                 allowed: torch.Tensor | None = None):
    """Best / second-best priced cost per row of ``chunk`` [B, D] -> (best_idx [B], best_cost [B], margin [B])."""
    cost = centroid_sq[None, :] + prices[None, :] - 2.0 * (chunk @ centroids.T)
    if allowed is not None:
        cost = cost.masked_fill(~allowed[None, :], float("inf"))
    if cost.shape[1] == 1:
        best_cost, best = cost.min(1)
        return best, best_cost, torch.full_like(best_cost, float("inf"))
    vals, idx = torch.topk(cost, 2, dim=1, largest=False, sorted=True)
    return idx[:, 0], vals[:, 0], vals[:, 1] - vals[:, 0]


def _greedy_fill(embeddings, point_ids, capacity, centroids, centroid_sq, prices, batch_size, device,
                 labels_out, first_proposals=None):
    """Place ``point_ids`` into clusters with room (``capacity`` [k], modified in place) by rounds of proposals;
    the largest margins win contested clusters; points left when every cluster is full keep label -1. Returns the
    first round's proposal counts (for the price step)."""
    k = centroids.shape[0]
    pending = point_ids
    first_counts = None
    while pending.numel() > 0:
        allowed = capacity > 0
        if not bool(allowed.any()):  # the N mod k leftover points; the caller places them with capacity one each
            break
        if first_proposals is not None and first_counts is None:
            best, margin = first_proposals  # the full pass already computed them with every cluster allowed
        else:
            bests, margins = [], []
            for start, end in _batches(pending.numel(), batch_size):
                chunk = embeddings[pending[start:end].to(embeddings.device)].to(device, torch.float32)
                b, _, m = _priced_top2(chunk, centroids, centroid_sq, prices, allowed)
                bests.append(b)
                margins.append(m)
            best, margin = torch.cat(bests), torch.cat(margins)
        counts = torch.bincount(best, minlength=k)
        if first_counts is None:
            first_counts = counts.clone()
        # order: by cluster, then by margin descending, then by point id (stable sorts keep it deterministic)
        order = torch.argsort(-margin, stable=True)
        order = order[torch.argsort(best[order], stable=True)]
        sorted_best = best[order]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(order.numel(), device=device) - starts[sorted_best]
        accept_sorted = rank < capacity[sorted_best]
        accepted = order[accept_sorted]
        labels_out[pending[accepted]] = best[accepted]
        capacity -= torch.bincount(best[accepted], minlength=k)
        pending = pending[order[~accept_sorted]].sort().values
    return first_counts


def _balanced_assignment(embeddings, centroids, prices, batch_size, device):
    """One exactly balanced assignment step -> (labels [N], margins of the priced argmin [N], first-round
    proposal counts per cluster [k])."""
    n, k = embeddings.shape[0], centroids.shape[0]
    centroid_sq = (centroids**2).sum(1)
    bests, margins = [], []
    for start, end in _batches(n, batch_size):
        chunk = embeddings[start:end].to(device, torch.float32)
        b, _, m = _priced_top2(chunk, centroids, centroid_sq, prices)
        bests.append(b)
        margins.append(m)
    best, margin = torch.cat(bests), torch.cat(margins)
    labels = torch.full((n,), -1, dtype=torch.long, device=device)
    capacity = torch.full((k,), n // k, dtype=torch.long, device=device)
    first_counts = _greedy_fill(embeddings, torch.arange(n, device=device), capacity, centroids, centroid_sq, prices,
                                batch_size, device, labels, first_proposals=(best, margin))
    leftover = (labels < 0).nonzero().squeeze(1)
    if leftover.numel():
        _greedy_fill(embeddings, leftover, torch.ones(k, dtype=torch.long, device=device), centroids,
                     centroid_sq, prices, batch_size, device, labels)
    return labels, margin, first_counts


def _price_step(prices, margin, first_counts, n: int, iteration: int):
    """Auction step: raise the price of over-subscribed clusters, lower it for under-subscribed ones."""
    k = prices.shape[0]
    finite = margin[torch.isfinite(margin)]
    scale = float(finite.median()) if finite.numel() else 0.0
    excess = (first_counts.float() - n / k) / (n / k)
    prices = prices + scale * excess.clamp(-1.0, 1.0) / math.sqrt(iteration + 1)
    return prices - prices.mean()


def _centroid_step(embeddings, labels, centroids, batch_size, device):
    """New centroids (mean of each cluster's points) and the inertia against the old ones."""
    n, k = embeddings.shape[0], centroids.shape[0]
    sums = torch.zeros(k, embeddings.shape[1], device=device)
    sq_total = 0.0
    for start, end in _batches(n, batch_size):
        chunk = embeddings[start:end].to(device, torch.float32)
        lab = labels[start:end]
        sums.index_add_(0, lab, chunk)
        sq_total += float(((chunk - centroids[lab]) ** 2).sum())
    sizes = torch.bincount(labels, minlength=k).clamp_min(1).float()
    return sums / sizes[:, None], sq_total / n


def fit_balanced_kmeans(embeddings: torch.Tensor, k: int, seed: int = 0, iters: int = 25, batch_size: int = 65536,
                        init_sample: int = 20000, tol: float = 1e-4, device: str | torch.device | None = None,
                        show_progress: bool = False) -> BalancedKMeansResult:
    """Balanced k-means (algorithm in the module docstring).

    Args:
        embeddings: Tensor[N, D] float (any device; batches are streamed to ``device``).
        k: number of clusters (1 ≤ k ≤ N); sizes come out as ``N // k`` or ``N // k + 1``.
        seed: seeds the k-means++ subsample and seeding; same seed + same hardware -> same labels.
        iters: maximum Lloyd iterations; stops early when fewer than ``tol · N`` labels change.
        batch_size: rows per distance batch (memory ≈ ``batch_size × k`` floats on ``device``).
        init_sample: points used for k-means++ seeding.
    """
    _validate(embeddings, k, batch_size)
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    device = torch.device(device) if device is not None else _default_device(embeddings)
    n = embeddings.shape[0]
    generator = torch.Generator().manual_seed(seed)
    sample_ids = torch.randperm(n, generator=generator)[: max(k, min(n, init_sample))].sort().values
    centroids = _kmeans_plus_plus(embeddings[sample_ids.to(embeddings.device)].to(device, torch.float32), k, generator)
    prices = torch.zeros(k, device=device)
    labels = torch.full((n,), -1, dtype=torch.long, device=device)
    iterator = range(iters)
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="balanced k-means", unit="iter")
    iterations = 0
    inertia = float("nan")
    for it in iterator:
        iterations = it + 1
        new_labels, best_margin, first_counts = _balanced_assignment(embeddings, centroids, prices, batch_size,
                                                                     device)
        changed = int((new_labels != labels).sum())
        labels = new_labels
        prices = _price_step(prices, best_margin, first_counts, n, it)
        centroids, inertia = _centroid_step(embeddings, labels, centroids, batch_size, device)
        if changed <= tol * n:
            break
    return BalancedKMeansResult(labels=labels.cpu(), centroids=centroids.cpu(), inertia=inertia,
                                iterations=iterations)


def balanced_kmeans(embeddings: torch.Tensor, k: int, seed: int = 0, iters: int = 25,
                    batch_size: int = 65536, **kwargs) -> torch.Tensor:
    """Exactly balanced k-means labels LongTensor[N] (sizes differ by at most one). See :func:`fit_balanced_kmeans`
    for the centroids and the algorithm."""
    return fit_balanced_kmeans(embeddings, k, seed=seed, iters=iters, batch_size=batch_size, **kwargs).labels


def assign_to_centroids(new_embeddings: torch.Tensor, centroids: torch.Tensor, batch_size: int = 65536,
                        device: str | torch.device | None = None) -> torch.Tensor:
    """Nearest centroid (Euclidean, no balancing) for ``new_embeddings`` [M, D] -> LongTensor[M] on CPU."""
    if not isinstance(centroids, torch.Tensor) or centroids.dim() != 2:
        raise ValueError("centroids must be a 2-D tensor [k, D]")
    _validate(new_embeddings, 1, batch_size) if new_embeddings.shape[0] else None
    if new_embeddings.dim() != 2 or new_embeddings.shape[1] != centroids.shape[1]:
        raise ValueError(f"new_embeddings must be [M, {centroids.shape[1]}] to match the centroids, "
                         f"got {tuple(new_embeddings.shape)}")
    device = torch.device(device) if device is not None else _default_device(new_embeddings)
    cents = centroids.to(device, torch.float32)
    cent_sq = (cents**2).sum(1)
    out = []
    for start, end in _batches(new_embeddings.shape[0], batch_size):
        chunk = new_embeddings[start:end].to(device, torch.float32)
        out.append((cent_sq[None, :] - 2.0 * chunk @ cents.T).argmin(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# ----------------------------------------------------------------------------------------------- selection


def target_distribution(pool_probs: Sequence[float], misalignment: Sequence[float], gamma: float,
                        keep: Sequence[bool] | None = None) -> np.ndarray:
    """``P_target(c) ∝ P_pool(c) · M(c)^γ`` over the kept clusters (dropped clusters get 0).

    γ = 0 returns the pool distribution (renormalized over kept clusters) whatever M is. M must be ≥ 0; clusters
    whose M is 0 get no mass when γ > 0. Computed in log space so γ = 5 on large M cannot overflow.
    """
    p = np.asarray(pool_probs, dtype=np.float64)
    m = np.asarray(misalignment, dtype=np.float64)
    if p.ndim != 1 or m.shape != p.shape:
        raise ValueError(f"pool_probs and misalignment must be 1-D of equal length, got {p.shape} and {m.shape}")
    if (p < 0).any() or not np.isfinite(p).all():
        raise ValueError("pool_probs must be finite and non-negative")
    if gamma < 0 or not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
    keep_mask = np.ones_like(p, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep_mask.shape != p.shape:
        raise ValueError("keep must have one entry per cluster")
    if gamma > 0:
        bad = keep_mask & (~np.isfinite(m) | (m < 0))
        if bad.any():
            raise ValueError(f"misalignment must be finite and >= 0 for kept clusters; bad clusters: "
                             f"{np.flatnonzero(bad).tolist()}")
    with np.errstate(divide="ignore"):
        log_w = np.log(p) + (gamma * np.log(np.where(keep_mask, m, 1.0)) if gamma > 0 else 0.0)
    log_w = np.where(keep_mask, log_w, -np.inf)
    if not np.isfinite(log_w).any():
        raise ValueError("no cluster has positive target mass (all dropped, empty, or M = 0)")
    w = np.exp(log_w - log_w[np.isfinite(log_w)].max())
    return w / w.sum()


def allocate_counts(probs: Sequence[float], total: int, available: Sequence[int]) -> np.ndarray:
    """Integer counts per cluster summing to ``min(total, sum(available))``, proportional to ``probs`` (largest
    remainder), never above ``available``; mass a full cluster cannot take is spread over the others by weight."""
    p = np.asarray(probs, dtype=np.float64)
    avail = np.asarray(available, dtype=np.int64)
    if p.shape != avail.shape:
        raise ValueError("probs and available must have one entry per cluster")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    counts = np.zeros_like(avail)
    remaining = int(min(total, avail[p > 0].sum()))
    while remaining > 0:
        open_ = (counts < avail) & (p > 0)
        w = np.where(open_, p, 0.0)
        ideal = w / w.sum() * remaining
        add = np.minimum(np.floor(ideal).astype(np.int64), avail - counts)
        if add.sum() == 0:  # hand the remainder out one by one, largest fractional part first
            order = np.lexsort((np.arange(len(p)), -(ideal - np.floor(ideal))))
            for c in order:
                if remaining == 0:
                    break
                if open_[c]:
                    add[c] += 1
                    remaining -= 1
            counts += add
            continue
        counts += add
        remaining -= int(add.sum())
    return counts


def sample_within_clusters(labels: Sequence[int], counts: Sequence[int], seed: int = 0,
                           exclude: Sequence[int] = ()) -> list[int]:
    """Uniformly sample ``counts[c]`` distinct pool indices from each cluster ``c`` (without replacement, skipping
    ``exclude``, e.g. the probe texts); returns sorted indices. Raises if a cluster has too few texts."""
    labels = np.asarray(labels)
    excluded = set(int(i) for i in exclude)
    rng = random.Random(seed)
    chosen: list[int] = []
    for c, want in enumerate(counts):
        if want <= 0:
            continue
        members = [int(i) for i in np.flatnonzero(labels == c) if int(i) not in excluded]
        if want > len(members):
            raise ValueError(f"cluster {c} has {len(members)} texts available, {want} requested")
        chosen.extend(rng.sample(members, int(want)))
    return sorted(chosen)


# ------------------------------------------------------------------------------------ probes and cluster scores


def probe_texts_by_cluster(texts: Sequence[str], labels: Sequence[int], probe_size: int, min_words: int = 25,
                           seed: int = 0) -> dict[int, list[tuple[str, list[int]]]]:
    """Per cluster, ``probe_size`` probe documents ``(text, pool indices used)``.

    Members are visited in a seeded random order and concatenated until a document has ``min_words`` words, so
    every probe document has room for a spoken span followed by text to distill on (short pool texts such as
    one-line questions would otherwise be all speech). A cluster with too few words gives fewer documents.
    """
    if probe_size < 1:
        raise ValueError(f"probe_size must be >= 1, got {probe_size}")
    labels = np.asarray(labels)
    rng = random.Random(seed)
    probes: dict[int, list[tuple[str, list[int]]]] = {}
    for c in sorted(set(labels.tolist())):
        members = [int(i) for i in np.flatnonzero(labels == c)]
        rng.shuffle(members)
        docs, current, words = [], [], 0
        for i in members:
            current.append(i)
            words += len(texts[i].split())
            if words >= min_words:
                docs.append((" ".join(texts[j].strip() for j in current), current))
                current, words = [], 0
                if len(docs) == probe_size:
                    break
        probes[int(c)] = docs
    return probes


def probe_documents_from_rows(span_rows: Sequence[dict]) -> list[dict]:
    """Group synthesized span rows (``doc_id``, ``span_index``, ``text``, ``audio``) into span documents
    ``{"id", "spans": [{"text", "audio"}]}`` in first-seen document order."""
    docs: dict[str, list[dict]] = {}
    for row in span_rows:
        docs.setdefault(str(row["doc_id"]), []).append(row)
    out = []
    for doc_id, rows in docs.items():
        rows = sorted(rows, key=lambda r: r["span_index"])
        out.append({"id": doc_id, "spans": [{"text": r["text"], "audio": r.get("audio")} for r in rows]})
    return out


def cluster_cer(span_rows: Sequence[dict], cluster_of_doc: dict[str, int]) -> dict[int, float]:
    """Mean CER of the spoken spans per cluster (rows without a CER are ignored; clusters without any: absent)."""
    values: dict[int, list[float]] = {}
    for row in span_rows:
        if row.get("audio") is not None and row.get("cer") is not None:
            values.setdefault(cluster_of_doc[str(row["doc_id"])], []).append(float(row["cer"]))
    return {c: float(np.mean(v)) for c, v in values.items()}


class MisalignmentScorer(Protocol):
    """What selection needs of a model: M (paper Eq. 2) on a list of span documents ``{"id", "spans"}``.
    ``trainers.diagnostics.MisalignmentProbe`` is the implementation on a SALAD checkpoint."""

    def misalignment(self, documents: Sequence[dict]) -> float: ...


def score_clusters(scorer: MisalignmentScorer, documents_by_cluster: dict[int, list[dict]],
                   progress: bool = True) -> dict[int, float]:
    """M(c) per cluster from ``scorer`` on the cluster's probe documents; clusters without a probe document that
    has audio are left out."""
    from tqdm.auto import tqdm

    scores: dict[int, float] = {}
    for c in tqdm(sorted(documents_by_cluster), desc="misalignment per cluster", disable=not progress):
        docs = [d for d in documents_by_cluster[c] if any(s.get("audio") is not None for s in d["spans"])]
        if docs:
            scores[c] = float(scorer.misalignment(docs))
    return scores
