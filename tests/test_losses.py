import math
import weakref

import pytest
import torch
import torch.utils._python_dispatch
import torch.utils._pytree

from trainers.losses import distillation_loss, salad_objective


def brute_force(student, teacher, beta, tau):
    """Per-position generalized JSD in float64 with explicit loops over the vocabulary."""
    out = []
    for zs, zt in zip(student.double().reshape(-1, student.shape[-1]), teacher.double().reshape(-1, student.shape[-1])):
        q = torch.softmax(zs / tau, -1).tolist()
        p = torch.softmax(zt / tau, -1).tolist()
        if beta == 0:
            val = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        elif beta == 1:
            val = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q))
        else:
            m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
            val = beta * sum(pi * math.log(pi / mi) for pi, mi in zip(p, m)) + (1 - beta) * sum(
                qi * math.log(qi / mi) for qi, mi in zip(q, m))
        out.append(val * tau * tau)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_zero_for_identical_logits(chunk_size):
    logits = torch.randn(2, 5, 11)
    for beta in (0.0, 0.5, 1.0):
        assert distillation_loss(logits, logits.clone(), beta=beta, chunk_size=chunk_size).abs().item() < 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_matches_brute_force(beta, tau, chunk_size):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 4, 7, generator=g) * 3, torch.randn(2, 4, 7, generator=g) * 3
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    expected = brute_force(student[mask], teacher[mask], beta, tau).sum() / mask.sum()
    got = distillation_loss(student.double(), teacher.double(), mask, beta, tau, chunk_size=chunk_size)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_output_dtype_follows_input():
    s, t = torch.randn(3, 9, dtype=torch.bfloat16), torch.randn(3, 9, dtype=torch.bfloat16)
    assert distillation_loss(s, t).dtype == torch.bfloat16
    assert distillation_loss(s, t, chunk_size=2).dtype == torch.bfloat16


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("tau", [1.0, 1.7])
def test_chunked_equals_unchunked_value_and_gradient(beta, tau):
    g = torch.Generator().manual_seed(1)
    base_s, base_t = torch.randn(3, 5, 13, generator=g, dtype=torch.float64), torch.randn(
        3, 5, 13, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 5, generator=g) > 0.3
    results = []
    for chunk in (None, 4):
        s, t = base_s.clone().requires_grad_(), base_t.clone().requires_grad_()
        loss = distillation_loss(s, t, mask, beta, tau, num_items_in_batch=7, chunk_size=chunk)
        (loss * 2.5).backward()
        results.append((loss.detach(), s.grad, t.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert results[0][1][~mask].abs().max() == 0  # masked-out rows get no gradient


def test_gradient_accumulation_invariance():
    """Sum of micro-batch losses normalised by the global count == one big batch."""
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 6, 10, generator=g, dtype=torch.float64), torch.randn(4, 6, 10, generator=g,
                                                                                dtype=torch.float64)
    mask = torch.rand(4, 6, generator=g) > 0.4
    mask[0, :] = True  # unequal counts per micro-batch
    full = distillation_loss(s, t, mask)
    total = int(mask.sum())
    accumulated = sum(distillation_loss(s[i:i + 1], t[i:i + 1], mask[i:i + 1], num_items_in_batch=total,
                                        chunk_size=2) for i in range(4))
    torch.testing.assert_close(accumulated, full)
    # and the naive per-micro-batch mean is different (the bug num_items_in_batch avoids)
    naive = sum(distillation_loss(s[i:i + 1], t[i:i + 1], mask[i:i + 1]) for i in range(4)) / 4
    assert not torch.isclose(naive, full)


def test_validation_errors():
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match="beta"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 5), beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 5), temperature=0)
    with pytest.raises(ValueError, match="mask shape"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 5), mask=torch.ones(3, dtype=torch.bool))


def test_salad_objective_mixes_kd_and_nll():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    targets = torch.randint(0, 8, (2, 3), generator=g)
    loss1, kd1, nll1 = salad_objective(s, t, targets, alpha=1.0)
    assert nll1 is None and torch.isclose(loss1, kd1)
    loss0, kd0, nll0 = salad_objective(s, None, targets, alpha=0.0)
    assert kd0 is None
    torch.testing.assert_close(nll0, torch.nn.functional.cross_entropy(s.reshape(-1, 8), targets.reshape(-1)))
    loss_half, kd, nll = salad_objective(s, t, targets, alpha=0.5)
    torch.testing.assert_close(loss_half, 0.5 * kd + 0.5 * nll)


def test_shared_vocabulary_drops_the_students_appended_ids_only():
    from trainers.losses import shared_vocabulary

    student, teacher = torch.randn(2, 3, 7), torch.randn(2, 3, 6)
    assert torch.equal(shared_vocabulary(student, teacher), student[..., :6])
    assert shared_vocabulary(teacher, teacher) is teacher
    with pytest.raises(ValueError, match="larger"):
        shared_vocabulary(teacher, student)


# ------------------------------------------------------------------------------------------------ fused forms
def _heads(seed, positions=13, width=8, teacher_width=6, vocab=21, teacher_vocab=20, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, positions, width, generator=g, dtype=dtype)
    weight = torch.randn(vocab, width, generator=g, dtype=dtype)
    teacher_hidden = torch.randn(2, positions, teacher_width, generator=g, dtype=dtype)
    teacher_weight = torch.randn(teacher_vocab, teacher_width, generator=g, dtype=dtype)
    targets = torch.randint(0, teacher_vocab, (2, positions), generator=g)
    mask = torch.rand(2, positions, generator=g) > 0.3
    return hidden, weight, teacher_hidden, teacher_weight, targets, mask


def _materialized(hidden, weight, teacher_hidden, teacher_weight, targets, mask, alpha, beta, tau, items):
    from trainers.losses import shared_vocabulary

    teacher_logits = teacher_hidden @ teacher_weight.t()
    student_logits = shared_vocabulary(hidden @ weight.t(), teacher_logits)
    return salad_objective(student_logits, teacher_logits, targets, mask, alpha, beta, tau, items)[0]


def _value_and_grads(fn, hidden, weight, *rest):
    hidden, weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(hidden, weight, *rest)
    (loss * 1.7).backward()
    return loss.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_fused_equals_materialized_value_and_gradients(beta, tau, alpha):
    """Shared vocabulary (teacher without the last id), a chunk (5) that does not divide the 2x13 positions."""
    from trainers.losses import fused_salad_objective

    hidden, weight, teacher_hidden, teacher_weight, targets, mask = _heads(seed=int(10 * beta + tau))

    def fused(h, w, th, tw, tg, m, a, b, t, items):
        return fused_salad_objective(h, w, th, tw, tg, m, a, b, t, items, chunk_size=5)[0]

    args = (teacher_hidden, teacher_weight, targets, mask, alpha, beta, tau, 11)
    expected = _value_and_grads(_materialized, hidden, weight, *args)
    got = _value_and_grads(fused, hidden, weight, *args)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert got[1][~mask].abs().max() == 0  # masked positions: zero gradient
    assert got[1][mask].abs().max() > 0


def test_fused_chunk_sizes_and_one_chunk_agree():
    from trainers.losses import fused_distillation_loss

    hidden, weight, teacher_hidden, teacher_weight, _, mask = _heads(seed=4, positions=17)
    results = [_value_and_grads(lambda h, w: fused_distillation_loss(h, w, teacher_hidden, teacher_weight, mask,
                                                                       beta=0.3, chunk_size=chunk), hidden, weight)
               for chunk in (None, 1, 4, 7, 1000)]
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _LiveChunkBuffers(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the distinct storages of at least ``numel`` elements alive after each op; keeps the peak."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.refs, self.peak = numel, {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.numel * t.element_size():
                self.refs.setdefault(t.untyped_storage().data_ptr(), []).append(weakref.ref(t))
        self.refs = {ptr: refs for ptr, refs in self.refs.items() if any(ref() is not None for ref in refs)}
        self.peak = max(self.peak, len(self.refs))
        return out


@pytest.mark.parametrize("alpha, beta, tau, most", [(1.0, 0.0, 1.0, 3), (1.0, 1.0, 2.0, 3), (0.4, 0.0, 2.0, 4)])
def test_fused_keeps_few_chunk_buffers_alive(alpha, beta, tau, most):
    """At the endpoints β ∈ {0, 1} at most three [chunk, V] buffers exist at once (four with the NLL term)."""
    from trainers.losses import fused_salad_objective

    chunk, vocab = 10, 64  # a chunk's logits outsize the heads [V, 8] (not counted); 26 rows: 3 chunks
    hidden, weight, teacher_hidden, teacher_weight, targets, _ = _heads(seed=9, vocab=vocab + 1, teacher_vocab=vocab)
    hidden, weight = hidden.requires_grad_(), weight.requires_grad_()
    with _LiveChunkBuffers(chunk * vocab) as live:
        fused_salad_objective(hidden, weight, teacher_hidden, teacher_weight, targets, None, alpha, beta, tau,
                              chunk_size=chunk)[0].backward()
    assert live.peak <= most, live.peak


def test_fused_without_grad_and_without_teacher():
    from trainers.losses import fused_salad_objective

    hidden, weight, teacher_hidden, teacher_weight, targets, mask = _heads(seed=5)
    with torch.no_grad():
        loss, kd, nll = fused_salad_objective(hidden, weight, teacher_hidden, teacher_weight, targets, mask)
    expected = _materialized(hidden, weight, teacher_hidden, teacher_weight, targets, mask, 1.0, 0.0, 1.0, None)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert nll is None and torch.equal(kd, loss)
    loss, kd, nll = fused_salad_objective(hidden, weight, None, None, targets, mask, alpha=0.0)
    full = torch.nn.functional.cross_entropy((hidden @ weight.t())[mask], targets[mask])  # whole vocabulary
    torch.testing.assert_close(loss, full)
    assert kd is None


def test_fused_bf16_is_numerically_safe():
    """bf16 hidden states and heads with large logits: finite, and close to the float32 computation."""
    from trainers.losses import fused_salad_objective

    hidden, weight, teacher_hidden, teacher_weight, targets, mask = _heads(seed=6, positions=33, width=16,
                                                                           teacher_width=16, vocab=301,
                                                                           teacher_vocab=300)
    hidden, teacher_hidden = hidden * 4, teacher_hidden * 4  # logits of magnitude ~100
    reference = _value_and_grads(lambda h, w: fused_salad_objective(
        h, w, teacher_hidden, teacher_weight, targets, mask, alpha=0.5, beta=0.5, chunk_size=8)[0], hidden, weight)
    got = _value_and_grads(lambda h, w: fused_salad_objective(
        h, w, teacher_hidden.bfloat16(), teacher_weight.bfloat16(), targets, mask, alpha=0.5, beta=0.5,
        chunk_size=8)[0], hidden.bfloat16(), weight.bfloat16())
    assert got[0].dtype == torch.bfloat16
    for a, b in zip(got, reference):
        assert torch.isfinite(a.float()).all()
        relative = (a.float() - b).norm() / b.norm()
        assert relative < 0.05, relative


def test_fused_validation_errors():
    from trainers.losses import fused_salad_objective, liger_distillation_loss

    hidden, weight, teacher_hidden, teacher_weight, targets, mask = _heads(seed=7)
    with pytest.raises(ValueError, match="teacher_hidden and teacher_weight"):
        fused_salad_objective(hidden, weight, None, None, targets)
    with pytest.raises(ValueError, match="larger"):
        fused_salad_objective(hidden, weight[:5], teacher_hidden, teacher_weight)
    with pytest.raises(ValueError, match="input size"):
        fused_salad_objective(hidden, weight[:, :3], teacher_hidden, teacher_weight)
    with pytest.raises(ValueError, match="targets"):
        fused_salad_objective(hidden, weight, teacher_hidden, teacher_weight, alpha=0.5)
    with pytest.raises(ValueError, match="mask shape"):
        fused_salad_objective(hidden, weight, teacher_hidden, teacher_weight, mask=mask[:1])
    with pytest.raises(ValueError, match="chunk_size"):
        fused_salad_objective(hidden, weight, teacher_hidden, teacher_weight, chunk_size=0)
    with pytest.raises(ValueError, match="CUDA"):
        liger_distillation_loss(hidden, weight, teacher_hidden, teacher_weight)


def test_fused_under_autocast_runs_the_heads_in_bf16_and_keeps_fp32_gradients():
    from trainers.losses import fused_salad_objective

    hidden, weight, teacher_hidden, teacher_weight, targets, mask = _heads(seed=8, positions=20, vocab=101,
                                                                           teacher_vocab=100)

    def loss_fn(h, w):
        return fused_salad_objective(h, w, teacher_hidden, teacher_weight, targets, mask, chunk_size=6)[0]

    reference = _value_and_grads(loss_fn, hidden, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _value_and_grads(loss_fn, hidden, weight)
    assert got[1].dtype == torch.float32 and got[2].dtype == torch.float32
    for a, b in zip(got, reference):
        assert torch.isfinite(a).all() and (a - b).norm() / b.norm() < 0.05
