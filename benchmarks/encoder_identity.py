"""Cost of the encoder-state cache's key: hashing a model's weights (`spans.encoder_states.weights_digest`).

    .venv/bin/python benchmarks/encoder_identity.py [--models WHISPER_DIR LLM_DIR]

Defaults come from `salad_demo.assets.prepare_assets()` (Whisper tiny.en, SmolLM2-135M-Instruct, whose size stands
in for a larger encoder). The first hash reads every tensor; later calls on the same, unchanged model are memoized.
Never run as a test.
"""

from __future__ import annotations

import argparse
import time


def measure(path: str) -> str:
    from transformers import AutoModel

    from spans.encoder_states import weights_digest

    model = AutoModel.from_pretrained(path)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    start = time.perf_counter()
    weights_digest(model)
    first = time.perf_counter() - start
    start = time.perf_counter()
    weights_digest(model)
    memoized = time.perf_counter() - start
    return (f"| `{path.rstrip('/').rsplit('/', 1)[-1]}` | {size / 1e6:.0f} MB | {first:.2f} s "
            f"({size / 1e9 / first:.2f} GB/s) | {memoized * 1e3:.1f} ms |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="model folders to hash")
    args = parser.parse_args(argv)
    if not args.models:
        from salad_demo.assets import prepare_assets

        assets = prepare_assets()
        args.models = [str(assets["whisper"]), str(assets["llm"])]
    print("| model | state dict | first hash | memoized |\n|---|---|---|---|")
    for path in args.models:
        print(measure(path), flush=True)


if __name__ == "__main__":
    main()
