"""Peak memory and time of one KD step: fused (hidden states through the heads chunk by chunk) vs materialized logits.

    python benchmarks/fused_kd_memory.py --shape 3b               # every path, each in a fresh subprocess
    python benchmarks/fused_kd_memory.py --shape 7b --paths fused materialized
    python benchmarks/fused_kd_memory.py --shape 7b --positions 512 --profile /tmp/prof   # where the time goes

The step is the loss part of a Stage I step at the real shapes: the student's final hidden states [positions, H]
(with grad) and its LM head [V_s, H] (trained, or frozen with ``--frozen-head``), the teacher's hidden states and
head [V_t, H] (V_t = V_s - 1: the student's appended ``<|audio|>`` id), forward KL, forward + backward.

* ``fused``: ``trainers.losses.fused_salad_objective`` (chunk ``--chunk``);
* ``materialized``: the logits at the positions (``hidden @ W.T`` for both models), then
  ``trainers.losses.distillation_loss`` with the same chunk for its divergence;
* ``materialized-1024``: the same with divergence chunks of 1024 positions;
* ``naive``: the same with one chunk (plain autograd).

Peak memory is the process's RSS high-water mark (``ru_maxrss``, which sees torch's CPU allocations: they are
mmap-backed and returned to the OS when freed) minus the RSS after the inputs are allocated, measured in a fresh
subprocess per path; the inputs are filled in place, so setting up leaves no higher mark. Each child also writes
its gradients' fingerprint (the hidden-state gradient, a fixed sample of 2^20 head-gradient entries, the
head-gradient norm) so the parent checks that every path returns the same gradients.

Time is reported as wall seconds and as the child's CPU seconds (user + system, and system alone: mostly the
kernel's page faults). On a shared machine the CPU time is the comparable one; each row carries the 1-minute load
average before and after its child.

``--profile DIR`` runs each child's step under ``torch.profiler`` (CPU, op-level self time, input shapes) and
writes ``DIR/<path>.txt``: the self time per phase (the head matmuls told apart by their shapes), then the top
ops. The profiled step's time and memory include the profiler's bookkeeping (a few hundred large ops: small).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SHAPES = {"3b": (2048, 151936), "7b": (3584, 152064), "tiny": (64, 4096)}
PATHS = ("fused", "materialized", "materialized-1024", "naive")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(args):
    import torch

    hidden_size, teacher_vocab = SHAPES[args.shape]
    g = torch.Generator().manual_seed(0)

    def normal(*shape, std=1.0):
        return torch.empty(*shape).normal_(0.0, std, generator=g)

    student_hidden = normal(args.positions, hidden_size).requires_grad_()
    student_weight = normal(teacher_vocab + 1, hidden_size, std=hidden_size ** -0.5)
    student_weight.requires_grad_(not args.frozen_head)
    teacher_hidden = normal(args.positions, hidden_size)
    teacher_weight = normal(teacher_vocab, hidden_size, std=hidden_size ** -0.5)
    return student_hidden, student_weight, teacher_hidden, teacher_weight


def _step(path, args, student_hidden, student_weight, teacher_hidden, teacher_weight):
    import torch

    from trainers.losses import distillation_loss, fused_salad_objective, shared_vocabulary

    if path == "fused":
        return fused_salad_objective(student_hidden, student_weight, teacher_hidden, teacher_weight,
                                     chunk_size=args.chunk)[0]
    chunk = {"materialized": args.chunk, "materialized-1024": 1024, "naive": None}[path]
    with torch.no_grad():
        teacher_logits = teacher_hidden @ teacher_weight.t()
    student_logits = shared_vocabulary(student_hidden @ student_weight.t(), teacher_logits)
    return distillation_loss(student_logits, teacher_logits, chunk_size=chunk)


def _phase(name: str, shapes: list, vocab_sizes: set) -> str:
    """The phase an op's self time belongs to, from its name and input shapes."""
    if not name.startswith("aten::"):
        return "autograd nodes and Python (self time outside aten ops)"
    if name in ("aten::mm", "aten::addmm", "aten::addmm_"):
        dims = [tuple(s) for s in shapes if len(s) == 2]
        if name != "aten::mm" or (len(dims) == 2 and dims[0][0] in vocab_sizes):
            return "grad wrt head weight ([V, c] @ [c, H] into [V, H])"
        if len(dims) == 2 and dims[0][1] in vocab_sizes:
            return "grad wrt hidden ([c, V] @ [V, H])"
        return "head matmuls, forward ([c, H] @ [H, V], student and teacher)"
    if name in ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous"):
        return "copies and dtype conversions"
    if name in ("aten::zeros_like", "aten::zero_", "aten::fill_", "aten::empty", "aten::empty_like",
                "aten::zeros", "aten::empty_strided"):
        return "allocation and zero-fill"
    if "softmax" in name:
        return "log_softmax (and its backward)"
    return "elementwise and reductions (exp, sub, mul, bmm row dots, sums, ...)"


def _profile_report(prof, vocab_sizes: set) -> str:
    phases: dict = {}
    events = prof.key_averages(group_by_input_shape=True)
    for event in events:
        if event.self_cpu_time_total <= 0:
            continue
        phase = _phase(event.key, event.input_shapes or [], vocab_sizes)
        total, count = phases.get(phase, (0.0, 0))
        phases[phase] = (total + event.self_cpu_time_total / 1e6, count + event.count)
    whole = sum(total for total, _ in phases.values()) or 1.0
    lines = [f"{'phase':70s} {'self s':>8s} {'share':>6s} {'calls':>6s}"]
    for phase, (total, count) in sorted(phases.items(), key=lambda item: -item[1][0]):
        lines.append(f"{phase:70s} {total:8.2f} {100 * total / whole:5.1f}% {count:6d}")
    lines.append(f"{'all ops':70s} {whole:8.2f}")
    table = events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40,
                         max_shapes_column_width=70)
    return "\n".join(lines) + "\n\n" + table


def _load1() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def _cpu_seconds() -> tuple:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _timed_step(args, tensors):
    """The step's loss, wall seconds and CPU seconds (user, system: the kernel's page-fault work)."""
    start, (user, system) = time.perf_counter(), _cpu_seconds()
    loss = _step(args.child, args, *tensors)
    loss.backward()
    user_end, system_end = _cpu_seconds()
    return loss, time.perf_counter() - start, (user_end - user, system_end - system)


def run_child(args) -> dict:
    import torch

    import trainers.losses  # noqa: F401  (imported before the baseline: the import's memory is not the step's)

    if args.threads:
        torch.set_num_threads(args.threads)

    tensors = _inputs(args)
    base_rss, base_peak = _rss_mb(), _peak_mb()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            loss, seconds, cpu_seconds = _timed_step(args, tensors)
        vocab_sizes = {tensors[1].shape[0], tensors[3].shape[0]}
        with open(os.path.join(args.profile, f"{args.child}.txt"), "w") as f:
            f.write(_profile_report(prof, vocab_sizes))
    else:
        loss, seconds, cpu_seconds = _timed_step(args, tensors)
    peak = _peak_mb()
    student_hidden, student_weight = tensors[0], tensors[1]
    fingerprint = {"loss": loss.detach(), "grad_hidden": student_hidden.grad}
    if student_weight.grad is not None:
        sample = torch.randint(0, student_weight.numel(), (2**20,), generator=torch.Generator().manual_seed(1))
        fingerprint["grad_weight_sample"] = student_weight.grad.reshape(-1)[sample].clone()
        fingerprint["grad_weight_norm"] = student_weight.grad.norm()
    torch.save(fingerprint, args.fingerprint)
    return {"path": args.child, "extra_peak_mb": round(peak - max(base_rss, base_peak), 1),
            "inputs_rss_mb": round(base_rss, 1), "seconds": round(seconds, 2),
            "cpu_seconds": round(sum(cpu_seconds), 2), "sys_seconds": round(cpu_seconds[1], 2), "loss": float(loss),
            "threads": torch.get_num_threads()}


def _compare(fingerprints: dict) -> dict:
    import torch

    reference = torch.load(next(iter(fingerprints.values())))
    errors = {}
    for path, file in fingerprints.items():
        other = torch.load(file)
        errors[path] = max(float((other[k].double() - reference[k].double()).abs().max()) for k in reference)
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    parser.add_argument("--positions", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--frozen-head", action="store_true", help="the student's LM head does not train")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--profile", metavar="DIR", help="profile each path's step; tables go to DIR/<path>.txt")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    common = ["--shape", args.shape, "--positions", str(args.positions), "--chunk", str(args.chunk)]
    common += (["--frozen-head"] if args.frozen_head else []) + ["--threads", str(args.threads)]
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        common += ["--profile", os.path.abspath(args.profile)]
    results, fingerprints = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for path in args.paths:
            fingerprints[path] = os.path.join(folder, f"{path}.pt")
            load_before = _load1()
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, "--fingerprint",
                                  fingerprints[path], *common], capture_output=True, text=True)
            if out.returncode != 0:
                results[path] = {"failed": out.stderr.strip().splitlines()[-1:] or [f"exit {out.returncode}"]}
                fingerprints.pop(path)
                continue
            results[path] = json.loads(out.stdout.strip().splitlines()[-1])
            results[path]["load_before_after"] = [load_before, _load1()]
            print(json.dumps(results[path]), flush=True)
        errors = _compare(fingerprints) if fingerprints else {}
    for path, error in errors.items():
        results[path]["max_abs_diff_vs_first"] = error
    if "fused" in results and "extra_peak_mb" in results["fused"]:
        for path, row in results.items():
            if path != "fused" and "extra_peak_mb" in row:
                row["fused_ratio"] = round(results["fused"]["extra_peak_mb"] / row["extra_peak_mb"], 3)
    summary = {"shape": args.shape, "positions": args.positions, "chunk": args.chunk,
               "frozen_head": args.frozen_head, "loadavg": open("/proc/loadavg").read().split()[:3],
               "results": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        from spans.files import atomic_write_json

        atomic_write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
