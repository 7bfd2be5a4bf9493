"""`salad-synth`: text (or multiple-choice items) -> a Hub-ready synthetic speech dataset folder.

    salad-synth --input texts.jsonl --output out/ --tts piper,flite:slt,festival
    salad-synth --input docs.parquet --output spans/ --tts piper --spans --num-shards 8 --shard-index 3
    salad-synth --input hellaswag --benchmark --output spoken-hellaswag/ --tts piper --cer-check WHISPER_DIR
    salad-synth --input texts.jsonl --output aug/ --tts flite:slt,festival --speed-jitter 0.1 --pitch-jitter 2 \\
        --noise-snr-db 15 30 --reverb-probability 0.5
Restarting the same command resumes; a finished folder is only redone with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tts import TTSBackendUnavailableError, VoicePool


def read_text_rows(source: str, *, text_column: str = "text", id_column: str = "id", split: str = "train",
                   limit: int | None = None) -> list[dict]:
    """Rows {"id", "text", ...other columns} from a JSONL/JSON/parquet/CSV/text file (one text per line), a
    dataset folder or a Hub dataset id. Rows without an id column get their index as id."""
    path = Path(source)
    if path.is_file() and path.suffix in (".txt", ".text"):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        rows = [{"id": str(i), "text": line} for i, line in enumerate(lines) if line]
    else:
        import datasets

        if path.is_file():
            kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
            if kind is None:
                raise ValueError(f"Unsupported input file {path} (use .jsonl, .json, .parquet, .csv or .txt)")
            if path.suffix == ".jsonl":
                from .benchmarks import read_jsonl

                read_jsonl(path)  # a clear error naming the file and line before datasets parses it
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        else:
            if not path.exists() and ("/" not in source or source.startswith((".", "/"))):
                raise ValueError(f"Input {source!r} is neither a local file/folder nor a Hub dataset id (owner/name)")
            ds = datasets.load_dataset(source, split=split)
        if text_column not in ds.column_names:
            raise ValueError(f"Input {source!r} has no text column {text_column!r}; columns: {ds.column_names} "
                             "(choose one with --text-column)")
        if limit:
            ds = ds.select(range(min(limit, len(ds))))
        drop = [c for c in ds.column_names if ds.features[c].__class__.__name__ in ("Audio", "Image", "Video")]
        ds = ds.remove_columns(drop)
        rows = []
        for i, row in enumerate(ds):
            row = dict(row)
            row["id"] = str(row[id_column]) if id_column in row and row[id_column] is not None else str(i)
            row["text"] = row.pop(text_column) if text_column != "text" else row["text"]
            rows.append(row)
    return rows[:limit] if limit else rows


# One clip per row in utterance/benchmark mode: a row longer than this would exceed the processor's 600 s
# (`max_audio_seconds`) at a slow 2.5 words/s, and training would read it as text only.
MAX_WORDS_PER_CLIP = 1500


def check_clip_lengths(rows: list[dict], source: str, field: str = "text") -> None:
    """ValueError naming the rows whose text is too long for one clip (the spans mode splits long texts)."""
    long_rows = [(str(r.get("id")), len(str(r.get(field) or "").split())) for r in rows
                 if len(str(r.get(field) or "").split()) > MAX_WORDS_PER_CLIP]
    if long_rows:
        shown = ", ".join(f"{i} ({n} words)" for i, n in long_rows[:5])
        raise ValueError(f"{source}: {len(long_rows)} row(s) have more than {MAX_WORDS_PER_CLIP} words, too long for "
                         f"one clip (over the processor's 600 s): {shown}. Use --spans to split each text into short "
                         "speech/text spans, or split these rows.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="JSONL/parquet/CSV/text file, dataset folder or Hub id; with "
                        "--benchmark also a BIG-bench task.json or one of the paper's sets (hellaswag, ...)")
    parser.add_argument("--text-column", default="text", help="column holding the text to speak")
    parser.add_argument("--id-column", default="id", help="column holding a unique row id (default: row index)")
    parser.add_argument("--split", default=None, help="split of a dataset folder / Hub id")
    parser.add_argument("--output", required=True, help="output folder (Hub-ready)")
    parser.add_argument("--tts", default="piper", help="voice pool: BACKEND[:VOICE][,BACKEND[:VOICE]...]")
    parser.add_argument("--spans", action="store_true", help="split each text into alternating speech/text spans")
    parser.add_argument("--benchmark", action="store_true", help="input is multiple-choice items: speak questions")
    parser.add_argument("--num-shards", type=int, default=1, help="split the job across this many machines")
    parser.add_argument("--shard-index", type=int, default=0, help="which shard this machine runs")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes for synthesis")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N input rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of voice assignment and span splitting")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate factor")
    parser.add_argument("--speed-jitter", type=float, default=0.0, help="per-row speed variation (0.1 = ±10%%)")
    parser.add_argument("--pitch-jitter", type=float, default=0.0, help="per-row pitch variation in semitones")
    parser.add_argument("--noise-snr-db", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="add noise to every clip at a per-row SNR drawn in [MIN, MAX] dB (default: none)")
    parser.add_argument("--noise-colors", default="white,pink,brown", help="noise spectra drawn from, per row")
    parser.add_argument("--reverb-probability", type=float, default=0.0,
                        help="fraction of rows put in a synthetic room (default 0: none)")
    parser.add_argument("--reverb-rt60", type=float, nargs=2, default=(0.2, 0.8), metavar=("MIN", "MAX"),
                        help="room reverberation time range in seconds")
    parser.add_argument("--reverb-drr-db", type=float, nargs=2, default=(0.0, 10.0), metavar=("MIN", "MAX"),
                        help="direct-to-reverberant ratio range in dB (lower = wetter)")
    parser.add_argument("--chunk-size", type=int, default=256, help="input rows per parquet part (resume unit)")
    parser.add_argument("--audio-format", choices=("flac", "wav"), default="flac")
    parser.add_argument("--overwrite", action="store_true", help="redo a finished (or differently set) run")
    parser.add_argument("--cer-check", default=None, metavar="WHISPER_PATH",
                        help="transcribe every clip with the Whisper model in this folder and store its CER "
                             "(`salad-assets` prints the path of a converted tiny.en)")
    parser.add_argument("--max-cer", type=float, default=None, help="drop clips whose CER exceeds this")
    parser.add_argument("--source-name", default=None, help="name of the text source for the card")
    parser.add_argument("--source-license", default="unknown", help="license of the source texts for the card")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def format_summary(summary: dict) -> str:
    totals = summary["totals"]
    skipped = ", ".join(f"{k}: {v}" for k, v in totals["skipped"].items()) or "none"
    xrt = f"{summary['x_real_time']}x real time" if summary["x_real_time"] else "nothing new synthesized"
    return (f"salad-synth: {totals['rows']} rows ({totals['input_rows']} input rows done) in {summary['output_dir']}; "
            f"{totals['audio_hours']:.4f} h of audio; this run: {summary['audio_seconds_now']:.1f} s of audio in "
            f"{summary['wall_seconds']:.1f} s ({xrt}), {summary['chunks_resumed']} chunk(s) resumed; "
            f"rows skipped: {skipped}" + (f"; mean CER {totals['mean_cer']}" if totals["mean_cer"] is not None else ""))


def _input_rows(args) -> tuple[list[dict], str]:
    if args.benchmark:
        from .benchmarks import load_mc_items

        rows, mode = load_mc_items(args.input, split=args.split, limit=args.limit), "benchmark"
    else:
        rows = read_text_rows(args.input, text_column=args.text_column, id_column=args.id_column,
                              split=args.split or "train", limit=args.limit)
        mode = "spans" if args.spans else "utterance"
    if not rows:
        raise ValueError(f"No input rows in {args.input!r}")
    if mode != "spans":
        check_clip_lengths(rows, args.input, "question" if mode == "benchmark" else "text")
    return rows, mode


def _transcriber(cer_check: str | None):
    """(transcriber, the CER model's name for the card) for --cer-check; (None, None) without it."""
    if cer_check is None:
        return None, None
    from .asr_check import WhisperTranscriber

    return WhisperTranscriber(cer_check), cer_check


def synth_config(args, mode: str, cer_model: str | None):
    """The flags -> a `SynthConfig`."""
    from .synth_writer import SynthConfig

    source = args.source_name or Path(args.input).name
    return SynthConfig(
        mode=mode, seed=args.seed, num_shards=args.num_shards, shard_index=args.shard_index, num_proc=args.num_proc,
        chunk_size=args.chunk_size, overwrite=args.overwrite, max_cer=args.max_cer, source=source,
        audio_format=args.audio_format, progress=not args.quiet,
        run_config={"input": args.input, "text_column": args.text_column, "limit": args.limit, "cer_model": cer_model},
        card_context={"sources": [{"name": source, "license": args.source_license}]})


def voice_pool(args) -> VoicePool:
    """The flags -> the `VoicePool` (voices, speed/pitch variation, noise and reverb augmentation)."""
    return VoicePool(args.tts, speed=args.speed, speed_jitter=args.speed_jitter, pitch_jitter=args.pitch_jitter,
                     noise_snr_db=args.noise_snr_db, noise_colors=args.noise_colors,
                     reverb_probability=args.reverb_probability, reverb_rt60_s=args.reverb_rt60,
                     reverb_drr_db=args.reverb_drr_db, seed=args.seed)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_cer is not None and args.cer_check is None:
        print("salad-synth: --max-cer needs --cer-check", file=sys.stderr)
        return 2
    try:
        from .synth_writer import write_span_dataset

        pool = voice_pool(args)
        rows, mode = _input_rows(args)
        transcriber, cer_model = _transcriber(args.cer_check)
        summary = write_span_dataset(rows, args.output, pool, synth_config(args, mode, cer_model), transcriber)
    except (ValueError, TTSBackendUnavailableError, FileNotFoundError) as err:
        print(f"salad-synth: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(json.dumps(summary["totals"]["skipped"]), file=sys.stderr) if summary["totals"]["skipped"] else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
