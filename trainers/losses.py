"""Distillation losses: pure functions on logits.

Convention (TRL's generalized JSD): with ``p = softmax(teacher / τ)``, ``q = softmax(student / τ)`` and
``M = β·p + (1−β)·q``::

    JSD_β = β·KL(p ‖ M) + (1−β)·KL(q ‖ M)            for 0 < β < 1
    β = 0  ->  KL(p ‖ q)   (forward KL, teacher ‖ student: the SALAD paper's L_DIST)
    β = 1  ->  KL(q ‖ p)   (reverse KL, student ‖ teacher)

The endpoints are computed exactly, not through the mixture (whose value is 0 there).

Temperature: logits are divided by τ and the divergence is multiplied by τ² (Hinton et al.), so the gradient
magnitude does not depend on τ. τ = 1 (the paper) leaves the divergence unscaled.

All arithmetic runs in float32 (or float64 for float64 inputs); the result is cast back to the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss", "salad_objective", "token_nll", "per_token_divergence"]


def shared_vocabulary(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Student logits `[..., V_s]` restricted to the teacher's vocabulary `[..., V_t]` (V_t <= V_s).

    A SALAD student's vocabulary is its text LLM's plus added tokens (the `<|audio|>` placeholder) appended after
    the teacher's ids; those never occur as distilled targets, so the divergence is taken over the shared ids
    (the student's distribution renormalized over them). Equal sizes return the logits unchanged.
    """
    student_vocab, teacher_vocab = student_logits.shape[-1], teacher_logits.shape[-1]
    if teacher_vocab > student_vocab:
        raise ValueError(f"teacher vocabulary ({teacher_vocab}) is larger than the student's ({student_vocab})")
    return student_logits if teacher_vocab == student_vocab else student_logits[..., :teacher_vocab]


def _validate(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask, beta: float, temperature: float):
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} "
            "must have the same shape [..., vocab]"
        )
    if student_logits.dim() < 1:
        raise ValueError("logits need a vocabulary dimension")
    if mask is not None and tuple(mask.shape) != tuple(student_logits.shape[:-1]):
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal the logits' leading shape "
                         f"{tuple(student_logits.shape[:-1])}")
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.0,
                         temperature: float = 1.0) -> torch.Tensor:
    """Differentiable per-position divergence (τ²-scaled), no reduction.

    student_logits, teacher_logits: [..., V] -> [...] in float32 (float64 for float64 input).
    """
    dtype = _compute_dtype(student_logits.dtype)
    s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    if beta == 0.0:
        div = (t.exp() * (t - s)).sum(-1)
    elif beta == 1.0:
        div = (s.exp() * (s - t)).sum(-1)
    else:
        log_m = torch.logsumexp(torch.stack([s + torch.log1p(torch.tensor(-beta, dtype=dtype)),
                                             t + torch.log(torch.tensor(beta, dtype=dtype))]), dim=0)
        div = beta * (t.exp() * (t - log_m)).sum(-1) + (1.0 - beta) * (s.exp() * (s - log_m)).sum(-1)
    return div * (temperature ** 2)


def _chunk_value_and_grads(zs: torch.Tensor, zt: torch.Tensor, beta: float, tau: float, need_s: bool, need_t: bool):
    """One chunk [c, V]: summed divergence and its analytic gradients w.r.t. both logits (τ² included)."""
    dtype = _compute_dtype(zs.dtype)
    s = F.log_softmax(zs.to(dtype) / tau, dim=-1)
    t = F.log_softmax(zt.to(dtype) / tau, dim=-1)
    q, p = s.exp(), t.exp()
    if beta == 0.0:
        g_t = t - s                                     # dL/dlog p (up to the softmax projection)
        value = (p * g_t).sum()
        grad_s = (q - p) if need_s else None
        grad_t = p * (g_t - (p * g_t).sum(-1, keepdim=True)) if need_t else None
    elif beta == 1.0:
        g_s = s - t
        value = (q * g_s).sum()
        grad_s = q * (g_s - (q * g_s).sum(-1, keepdim=True)) if need_s else None
        grad_t = (p - q) if need_t else None
    else:
        log_m = torch.logaddexp(s + torch.log1p(torch.tensor(-beta, dtype=dtype)),
                                t + torch.log(torch.tensor(beta, dtype=dtype)))
        value = beta * (p * (t - log_m)).sum() + (1.0 - beta) * (q * (s - log_m)).sum()
        # dL/dq = (1-β)(log q - log M), dL/dp = β(log p - log M); then the softmax Jacobian.
        g_s = (1.0 - beta) * (s - log_m)
        g_t = beta * (t - log_m)
        grad_s = q * (g_s - (q * g_s).sum(-1, keepdim=True)) if need_s else None
        grad_t = p * (g_t - (p * g_t).sum(-1, keepdim=True)) if need_t else None
    scale = tau  # τ² · (1/τ) from d(z/τ)/dz
    grad_s = grad_s * scale if grad_s is not None else None
    grad_t = grad_t * scale if grad_t is not None else None
    return value * tau ** 2, grad_s, grad_t


class _ChunkedDivergence(torch.autograd.Function):
    """Sum of per-row divergences over [N, V] rows, computed chunk by chunk.

    The forward computes the gradients too (one [N, V] buffer per input that needs them, in the input dtype), so
    only one chunk's float32 intermediates are ever alive.
    """

    @staticmethod
    def forward(ctx, student, teacher, beta, tau, chunk_size):
        need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_s_buf = torch.empty_like(student) if need_s else None
        grad_t_buf = torch.empty_like(teacher) if need_t else None
        total = torch.zeros((), dtype=_compute_dtype(student.dtype), device=student.device)
        for start in range(0, student.shape[0], chunk_size):
            end = min(start + chunk_size, student.shape[0])
            value, g_s, g_t = _chunk_value_and_grads(student[start:end], teacher[start:end], beta, tau, need_s, need_t)
            total += value
            if need_s:
                grad_s_buf[start:end] = g_s.to(student.dtype)
            if need_t:
                grad_t_buf[start:end] = g_t.to(teacher.dtype)
        ctx.save_for_backward(grad_s_buf if need_s else None, grad_t_buf if need_t else None)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_s_buf, grad_t_buf = ctx.saved_tensors
        grad_s = grad_s_buf * grad_output.to(grad_s_buf.dtype) if grad_s_buf is not None else None
        grad_t = grad_t_buf * grad_output.to(grad_t_buf.dtype) if grad_t_buf is not None else None
        return grad_s, grad_t, None, None, None


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    beta: float = 0.0,
    temperature: float = 1.0,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Generalized JSD between teacher and student next-token distributions, summed over positions.

    Args:
        student_logits: [..., V] student logits at the distilled positions.
        teacher_logits: [..., V] teacher logits at the aligned positions (same shape).
        mask: bool [...] (the logits' leading shape); False positions do not count. None = all count.
        beta: 0 -> KL(teacher ‖ student) (paper), 1 -> KL(student ‖ teacher), in between the β-skewed JSD.
        temperature: τ; logits / τ, divergence × τ².
        num_items_in_batch: divisor (global count of distilled positions, for gradient-accumulation and
            multi-process invariance). None -> the local number of masked positions (at least 1).
        chunk_size: rows per chunk; when set, the float32 [N, V] intermediates are never all alive
            (same value and gradient as unchunked).

    Returns:
        scalar, in the student logits' dtype.
    """
    _validate(student_logits, teacher_logits, mask, beta, temperature)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    vocab = student_logits.shape[-1]
    student = student_logits.reshape(-1, vocab)
    teacher = teacher_logits.reshape(-1, vocab)
    if mask is not None:
        flat_mask = mask.reshape(-1).to(torch.bool)
        if not bool(flat_mask.all()):
            student, teacher = student[flat_mask], teacher[flat_mask]
    count = student.shape[0]
    if chunk_size is None:
        total = per_token_divergence(student, teacher, beta, temperature).sum()
    else:
        total = _ChunkedDivergence.apply(student, teacher, float(beta), float(temperature), int(chunk_size))
    denominator = num_items_in_batch if num_items_in_batch is not None else count
    denominator = torch.as_tensor(denominator, dtype=total.dtype, device=total.device).clamp(min=1)
    return (total / denominator).to(student_logits.dtype)


def token_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None,
              num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Summed next-token cross-entropy / (num_items_in_batch or local count).

    logits: [..., V]; targets: long [...] (the token that follows each position); mask: bool [...].
    """
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets shape {tuple(targets.shape)} must equal logits' leading shape")
    dtype = _compute_dtype(logits.dtype)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).to(dtype), targets.reshape(-1), reduction="none")
    if mask is not None:
        nll = nll * mask.reshape(-1).to(dtype)
        count = mask.sum()
    else:
        count = nll.numel()
    denominator = num_items_in_batch if num_items_in_batch is not None else count
    denominator = torch.as_tensor(denominator, dtype=dtype, device=nll.device).clamp(min=1)
    return (nll.sum() / denominator).to(logits.dtype)


def salad_objective(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor,
                    mask: torch.Tensor | None = None, alpha: float = 1.0, beta: float = 0.0,
                    temperature: float = 1.0, num_items_in_batch=None, chunk_size: int | None = None):
    """The paper's objective ``α·L_DIST + (1−α)·L_NLL`` (Eq. 4) at the distilled positions.

    student_logits, teacher_logits: [..., V] (teacher may be None when alpha == 0); targets: long [...] next
    tokens; mask: bool [...]. Returns (loss, kd_loss, nll), each a scalar; a term with weight 0 is not computed
    (returned as None).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    kd = nll = None
    loss = student_logits.new_zeros(())
    if alpha > 0:
        if teacher_logits is None:
            raise ValueError("alpha > 0 needs teacher_logits")
        kd = distillation_loss(student_logits, teacher_logits, mask, beta, temperature, num_items_in_batch,
                               chunk_size)
        loss = loss + alpha * kd
    if alpha < 1:
        nll = token_nll(student_logits, targets, mask, num_items_in_batch)
        loss = loss + (1.0 - alpha) * nll
    return loss, kd, nll
