import math

import pytest
import torch

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
