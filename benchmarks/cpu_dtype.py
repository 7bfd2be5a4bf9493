"""float32 vs bfloat16 on this CPU, in one process: the demo's two costly forwards, timed, and what bf16 changes.

    .venv/bin/python benchmarks/cpu_dtype.py [--llm LLM_DIR] [--whisper WHISPER_DIR] [--threads 2] [--repeats 3]

* the LLM (SmolLM2-135M-Instruct) reading an evaluation prompt (128 and 600 tokens, `logits_to_keep=1`, as the
  scorer's shared prefix does);
* Whisper tiny.en's encoder on one padded 30 s window (what the `features` stage computes per clip).

For each: seconds per forward in float32 and in bfloat16 (weights cast, no autocast), their ratio, and the largest
difference bf16 makes (last-position log-probabilities for the LLM, encoder states for Whisper). Whether bf16 pays
depends on the CPU: with AMX or AVX512-BF16 oneDNN runs bf16 matmuls natively. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seconds_per_call(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks its kernels on the first call
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def compare_dtypes(model, make_output, repeats: int) -> dict:
    """Times `make_output(model)` in float32 and bfloat16; the largest absolute difference of the two outputs."""
    row = {}
    outputs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        name = str(dtype).removeprefix("torch.")
        row[f"{name}_s"] = round(seconds_per_call(lambda: make_output(model), repeats), 4)
        outputs[name] = make_output(model).float()
    model.to(torch.float32)
    row["speedup"] = round(row["float32_s"] / row["bfloat16_s"], 2)
    row["max_abs_diff"] = float((outputs["float32"] - outputs["bfloat16"]).abs().max())
    return row


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split() if f.startswith(("amx", "avx512_bf16", "avx512f")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", help="causal LM folder (default: salad-assets llm)")
    parser.add_argument("--whisper", help="Whisper folder (default: salad-assets whisper)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, WhisperModel

    if not (args.llm and args.whisper):
        from salad_demo.assets import prepare_assets

        assets = prepare_assets()
        args.llm, args.whisper = args.llm or assets["llm"], args.whisper or assets["whisper"]
    llm = AutoModelForCausalLM.from_pretrained(args.llm, dtype=torch.float32).eval()
    encoder = WhisperModel.from_pretrained(args.whisper, dtype=torch.float32).get_encoder().eval()
    generator = torch.Generator().manual_seed(0)
    rows = {"threads": args.threads, "cpu_flags": cpu_flags()}
    for length in (128, 600):
        ids = torch.randint(0, llm.config.vocab_size, (1, length), generator=generator)
        rows[f"llm_{length}_tokens"] = compare_dtypes(
            llm, lambda m: torch.log_softmax(m(input_ids=ids, logits_to_keep=1).logits[0, -1].float(), -1),
            args.repeats)
    features = torch.randn(1, encoder.config.num_mel_bins, 3000, generator=generator)
    rows["whisper_encoder_30s"] = compare_dtypes(
        encoder, lambda m: m(features.to(next(m.parameters()).dtype)).last_hidden_state, args.repeats)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
