"""Distillation losses: pure functions on logits, and their fused forms on final hidden states.

Convention (TRL's generalized JSD): with ``p = softmax(teacher / τ)``, ``q = softmax(student / τ)`` and
``M = β·p + (1−β)·q``::

    JSD_β = β·KL(p ‖ M) + (1−β)·KL(q ‖ M)            for 0 < β < 1
    β = 0  ->  KL(p ‖ q)   (forward KL, teacher ‖ student: the SALAD paper's L_DIST)
    β = 1  ->  KL(q ‖ p)   (reverse KL, student ‖ teacher)

The endpoints are computed exactly, not through the mixture (whose value is 0 there).

Temperature: logits are divided by τ and the divergence is multiplied by τ² (Hinton et al.), so the gradient
magnitude does not depend on τ. τ = 1 (the paper) leaves the divergence unscaled.

All arithmetic runs in float32 (or float64 for float64 inputs); the result is cast back to the input dtype.

The fused forms (:func:`fused_salad_objective`, :func:`fused_distillation_loss`) take the final hidden states at
the distilled positions and the LM-head weights instead of logits: each chunk of positions goes through the heads,
its divergence and its gradients (w.r.t. the student's hidden states and head weight) are taken at once, and the
chunk's logits are freed before the next. Only one chunk's ``[chunk, V]`` logits ever exist, forward and backward;
the backward only scales the gradients already accumulated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss", "salad_objective", "token_nll", "per_token_divergence", "fused_salad_objective",
           "fused_distillation_loss", "liger_distillation_loss", "DEFAULT_FUSED_CHUNK_SIZE"]

DEFAULT_FUSED_CHUNK_SIZE = 128


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


def _log_probs(logits: torch.Tensor, tau: float, owned: bool = False) -> torch.Tensor:
    """``log_softmax(logits / τ)`` over the last dimension, in the compute dtype.

    ``owned``: the caller drops ``logits`` afterwards, so they may be divided in place (no [c, V] temporary).
    """
    z = logits.to(_compute_dtype(logits.dtype))
    if tau != 1.0:
        z = z.div_(tau) if owned else z / tau
    return F.log_softmax(z, dim=-1)


def _chunk_value_and_grads(zs: torch.Tensor, zt: torch.Tensor, beta: float, tau: float, need_s: bool, need_t: bool):
    """One chunk [c, V]: summed divergence and its analytic gradients w.r.t. both logits (τ² included)."""
    return _divergence_and_grads(_log_probs(zs, tau), _log_probs(zt, tau), beta, tau, need_s, need_t)


def _divergence_and_grads(s: torch.Tensor, t: torch.Tensor, beta: float, tau: float, need_s: bool, need_t: bool):
    """:func:`_chunk_value_and_grads` from the chunk's log-probabilities at temperature τ."""
    dtype = s.dtype
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


# ------------------------------------------------------------------------------------------------ fused forms
def _matmul_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype the head matmuls run in: autocast's when it is on for the weight's device, else the weight's."""
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def _row_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row inner products of two [c, V] tensors, without a [c, V] temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def _student_chunk(s: torch.Tensor, t: torch.Tensor, beta: float, tau: float, need_grad: bool):
    """One chunk: summed divergence (τ² included) and its gradient w.r.t. the student logits only.

    s, t: the student's and teacher's log-probabilities at temperature τ, [c, V]; ``s`` may be overwritten (it becomes
    the gradient). The same values as :func:`_divergence_and_grads` at the endpoints β ∈ {0, 1} with fewer [c, V]
    passes and buffers (the loss is memory-bound on CPU); the mixture (0 < β < 1) goes through it.
    """
    if 0.0 < beta < 1.0:
        value, grad, _ = _divergence_and_grads(s, t, beta, tau, need_grad, False)
        return value, grad
    if beta == 0.0:  # KL(p ‖ q): value Σ p (t − s), gradient τ (q − p)
        p = t.exp()
        value = (_row_dots(p, t) - _row_dots(p, s)).sum()
        grad = s.exp_().sub_(p) if need_grad else None
    else:  # KL(q ‖ p): value Σ q (s − t), gradient τ q (g − Σ q g) with g = s − t
        q = s.exp()
        g = s.sub_(t)
        rows = _row_dots(q, g)
        value = rows.sum()
        grad = g.sub_(rows.unsqueeze(1)).mul_(q) if need_grad else None
    if grad is not None and tau != 1.0:
        grad.mul_(tau)
    return value * tau ** 2, grad


def _chunk_nll_and_grad(logits: torch.Tensor, targets: torch.Tensor, need_grad: bool):
    """Summed cross-entropy of a chunk [c, V] and its gradient w.r.t. the logits (float32)."""
    log_probs = F.log_softmax(logits.to(_compute_dtype(logits.dtype)), dim=-1)
    value = -log_probs.gather(1, targets.unsqueeze(1)).sum()
    if not need_grad:
        return value, None
    grad = log_probs.exp_()
    grad[torch.arange(grad.shape[0], device=grad.device), targets] -= 1.0
    return value, grad


class _FusedLinearObjective(torch.autograd.Function):
    """Sums over rows of ``α·divergence + (1−α)·NLL`` from hidden states, one chunk of rows at a time.

    Inputs: student_hidden [N, D], student_weight [V_s, D], teacher_hidden [N, D_t] (or None), teacher_weight
    [V_t, D_t] (or None), targets long [N] (or None). Outputs (weighted sum, divergence sum, NLL sum); only the first
    is differentiable. The gradients are formed during the forward (the loss is the graph's last node), into one
    [N, D] and one [V_s, D] buffer in the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, student_hidden, student_weight, teacher_hidden, teacher_weight, targets, alpha, beta, tau,
                chunk_size):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(student_hidden) if need_h else None
        grad_w = torch.zeros_like(student_weight) if need_w else None
        dtype = _compute_dtype(student_hidden.dtype)
        sums = torch.zeros(2, dtype=dtype, device=student_hidden.device)
        mm_dtype = _matmul_dtype(student_weight)
        device_type = student_hidden.device.type
        with torch.autocast(device_type, enabled=False):
            # With a teacher, both terms score the shared ids only (as salad_objective on shared_vocabulary logits).
            used = student_weight.shape[0] if teacher_weight is None else teacher_weight.shape[0]
            weight = student_weight[:used].to(mm_dtype)
            heads = (weight, None if teacher_weight is None else teacher_weight.to(mm_dtype))
            grad_w_used = grad_w[:used] if need_w else None
            for start in range(0, student_hidden.shape[0], chunk_size):
                rows = slice(start, min(start + chunk_size, student_hidden.shape[0]))
                hidden = student_hidden[rows].to(mm_dtype)
                grad_logits = _fused_chunk(hidden, heads, teacher_hidden, targets, rows, alpha, beta, tau, sums,
                                           need_h or need_w)
                if grad_logits is None:
                    continue
                grad_logits = grad_logits.to(mm_dtype)
                if need_h:
                    grad_h[rows] = grad_logits @ weight
                if need_w:
                    grad_w_used.addmm_(grad_logits.t().to(grad_w.dtype), hidden.to(grad_w.dtype))
                del grad_logits  # else it is alive through the next chunk's forward
        ctx.grads = (grad_h, grad_w)
        kd_sum, nll_sum = sums[0], sums[1]
        total = alpha * kd_sum + (1.0 - alpha) * nll_sum
        ctx.mark_non_differentiable(kd_sum, nll_sum)
        return total, kd_sum, nll_sum

    @staticmethod
    def backward(ctx, grad_total, _grad_kd, _grad_nll):
        grad_h, grad_w = ctx.grads
        ctx.grads = None  # the buffers become the gradients; the graph keeps no second reference
        for grad in (grad_h, grad_w):
            if grad is not None:
                grad.mul_(grad_total.to(grad.dtype))  # in place: no second [V, D] buffer
        return grad_h, grad_w, None, None, None, None, None, None, None


def _fused_chunk(hidden, heads, teacher_hidden, targets, rows, alpha, beta, tau, sums, need_grad):
    """One chunk: adds its divergence and NLL to ``sums``; returns d(weighted sum)/d(student logits) or None.

    Each [c, V] buffer is dropped once used (the logits right after their log-softmax), so at the endpoints
    β ∈ {0, 1} at most three of them (four with the NLL term) are alive at a time.
    """
    weight, teacher_weight = heads
    logits = hidden @ weight.t()
    grad = None
    if alpha < 1:
        value, grad = _chunk_nll_and_grad(logits, targets[rows], need_grad)
        sums[1] += value
        if grad is not None:
            grad.mul_(1.0 - alpha)
    if alpha > 0:
        student = _log_probs(logits, tau, owned=True)
        del logits
        teacher = _log_probs(teacher_hidden[rows].to(teacher_weight.dtype) @ teacher_weight.t(), tau, owned=True)
        value, grad_kd = _student_chunk(student, teacher, beta, tau, need_grad)
        del student, teacher
        sums[0] += value
        if need_grad:
            grad_kd = grad_kd.mul_(alpha) if alpha < 1 else grad_kd
            grad = grad_kd if grad is None else grad.add_(grad_kd)
    return grad


def _validate_fused(student_hidden, student_weight, teacher_hidden, teacher_weight, targets, mask, alpha):
    if student_hidden.shape[-1] != student_weight.shape[-1]:
        raise ValueError(f"student_hidden's last dimension ({student_hidden.shape[-1]}) must equal the student "
                         f"head weight's input size ({student_weight.shape[-1]})")
    lead = tuple(student_hidden.shape[:-1])
    if alpha > 0:
        if teacher_hidden is None or teacher_weight is None:
            raise ValueError("alpha > 0 needs teacher_hidden and teacher_weight")
        if tuple(teacher_hidden.shape[:-1]) != lead or teacher_hidden.shape[-1] != teacher_weight.shape[-1]:
            raise ValueError(f"teacher_hidden {tuple(teacher_hidden.shape)} must be [{', '.join(map(str, lead))}, "
                             f"{teacher_weight.shape[-1]}] (the student's positions, the teacher head's width)")
        if teacher_weight.shape[0] > student_weight.shape[0]:
            raise ValueError(f"teacher vocabulary ({teacher_weight.shape[0]}) is larger than the student's "
                             f"({student_weight.shape[0]})")
    if alpha < 1 and (targets is None or tuple(targets.shape) != lead):
        raise ValueError(f"alpha < 1 needs targets of shape {lead} (the token after each position)")
    if mask is not None and tuple(mask.shape) != lead:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal the hidden states' leading shape {lead}")


def _select_rows(mask, *tensors):
    """Flatten the leading dimensions ([..., D] -> [N, D], [...] -> [N]) and keep the rows where ``mask`` holds."""
    flat = [None if t is None else t.reshape(-1, t.shape[-1]) if t.is_floating_point() else t.reshape(-1)
            for t in tensors]
    if mask is None:
        return flat
    keep = mask.reshape(-1).to(torch.bool)
    return [None if t is None else t[keep] for t in flat]


def fused_salad_objective(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    teacher_weight: torch.Tensor | None,
    targets: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    temperature: float = 1.0,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_size: int | None = DEFAULT_FUSED_CHUNK_SIZE,
):
    """:func:`salad_objective` computed from final hidden states, never materializing all the logits.

    Args:
        student_hidden: [..., D] the student's final (normed) hidden states at the distilled positions.
        student_weight: [V_s, D] the student's LM-head weight (no bias).
        teacher_hidden: [..., D_t] the teacher's at the aligned positions (None when alpha == 0).
        teacher_weight: [V_t, D_t], V_t <= V_s: both terms score the shared ids only (see
            :func:`shared_vocabulary`); without a teacher the NLL uses the student's whole vocabulary.
        targets: long [...] the next tokens (needed when alpha < 1).
        mask: bool [...]; False positions do not count and get zero gradient. None = all count.
        alpha, beta, temperature, num_items_in_batch: as in :func:`salad_objective`.
        chunk_size: positions per chunk (the [chunk, V] float32 logits alive at a time); None = one chunk.

    Returns:
        (loss, kd, nll): scalars in student_hidden's dtype; kd / nll are detached values for logging (None for a
        term with weight 0). Value and gradients equal the materialized path's.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    _validate_fused(student_hidden, student_weight, teacher_hidden, teacher_weight, targets, mask, alpha)
    hidden, teacher, rows_targets = _select_rows(mask, student_hidden, teacher_hidden if alpha > 0 else None,
                                                 targets if alpha < 1 else None)
    chunk = int(chunk_size) if chunk_size is not None else max(hidden.shape[0], 1)
    total, kd_sum, nll_sum = _FusedLinearObjective.apply(
        hidden, student_weight, teacher, teacher_weight if alpha > 0 else None, rows_targets, float(alpha),
        float(beta), float(temperature), chunk)
    denominator = num_items_in_batch if num_items_in_batch is not None else hidden.shape[0]
    denominator = torch.as_tensor(denominator, dtype=total.dtype, device=total.device).clamp(min=1)
    out_dtype = student_hidden.dtype
    kd = (kd_sum / denominator).to(out_dtype) if alpha > 0 else None
    nll = (nll_sum / denominator).to(out_dtype) if alpha < 1 else None
    return (total / denominator).to(out_dtype), kd, nll


def fused_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, mask=None,
                            beta: float = 0.0, temperature: float = 1.0, num_items_in_batch=None,
                            chunk_size: int | None = DEFAULT_FUSED_CHUNK_SIZE) -> torch.Tensor:
    """:func:`distillation_loss` from hidden states and head weights (shapes as in :func:`fused_salad_objective`)."""
    loss, _, _ = fused_salad_objective(student_hidden, student_weight, teacher_hidden, teacher_weight, None, mask,
                                       1.0, beta, temperature, num_items_in_batch, chunk_size)
    return loss


def liger_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, mask=None,
                            beta: float = 0.0, temperature: float = 1.0, num_items_in_batch=None) -> torch.Tensor:
    """:func:`fused_distillation_loss` through Liger-Kernel's Triton ``LigerFusedLinearJSD`` (CUDA only).

    Liger uses the same generalized-JSD convention (P = teacher, M = β·P + (1−β)·Q) but divides by the number of
    rows and leaves out τ²; both are put back here, so the value equals ours.
    """
    if student_hidden.device.type != "cuda":
        raise ValueError("kd_implementation='liger' needs CUDA tensors (Liger's kernels are Triton); on "
                         f"{student_hidden.device.type} use kd_implementation='fused'")
    try:
        from liger_kernel.transformers import LigerFusedLinearJSD
    except ImportError as error:
        raise ValueError("kd_implementation='liger' needs the liger-kernel package (pip install liger-kernel)") \
            from error
    _validate_fused(student_hidden, student_weight, teacher_hidden, teacher_weight, None, mask, 1.0)
    hidden, teacher = _select_rows(mask, student_hidden, teacher_hidden)
    shared = teacher_weight.shape[0]
    loss = LigerFusedLinearJSD(jsd_beta=float(beta), temperature=float(temperature))(
        hidden, student_weight[:shared], teacher, teacher_weight)
    count = hidden.shape[0]
    denominator = num_items_in_batch if num_items_in_batch is not None else count
    denominator = torch.as_tensor(denominator, dtype=torch.float32, device=loss.device).clamp(min=1)
    return (loss.float() * (count * temperature ** 2) / denominator).to(student_hidden.dtype)
