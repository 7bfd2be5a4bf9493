"""How often a Whisper token's text is several SmolLM2 tokens (the vocabulary bridge's pieces), on running text.

    SALAD_CACHE=/work/main/.cache PYTHONPATH=. python benchmarks/posterior_pieces.py
"""
import sys
sys.path.insert(0, "benchmarks")
from collections import Counter
from transformers import AutoConfig, AutoTokenizer
from posterior_front_end import load_items
from modeling_salad.transcript_adapter import vocabulary_bridge
from salad_demo.assets import prepare_assets
a = prepare_assets()
wt, lt = AutoTokenizer.from_pretrained(a["whisper"]), AutoTokenizer.from_pretrained(a["llm"])
whisper_config = AutoConfig.from_pretrained(a["whisper"])
ids, counts = vocabulary_bridge(wt, lt, whisper_config.vocab_size, 4)
for tasks in (("general_knowledge", "known_unknowns"), ("strategyqa",)):
    texts = [" " + it["question"] for rows in load_items(tasks).values() for it in rows]
    toks = [t for x in texts for t in wt(x, add_special_tokens=False)["input_ids"]]
    c = Counter(int(counts[t]) for t in toks)
    whisper_n, llm_n = len(toks), sum(len(lt(x, add_special_tokens=False)["input_ids"]) for x in texts)
    multi = [wt.decode([t]) for t in toks if counts[t] > 1]
    print(tasks, "whisper tokens", whisper_n, "pieces histogram", dict(sorted(c.items())),
          "multi-piece %.1f%%" % (100 * sum(v for k, v in c.items() if k > 1) / whisper_n),
          "LLM tokens of the same text", llm_n, "examples", Counter(multi).most_common(8))
print("vocab entries with >1 piece: %.1f%%" % (100 * float((counts[: whisper_config.eos_token_id] > 1).float().mean())),
      "truncated at 4:", int((counts == 4).sum()))
