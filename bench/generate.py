"""Generation speed: ours against `transformers` generate on the same model, same prompts, same run.

    flock /tmp/swahili100-cpu.lock .venv/bin/python bench/generate.py \
        [--checkpoint demo_out/runs/debug] [--new 64] [--reps 5] [--batch-sizes 1,8]

Ours is `generate.generate_batch` (prompts left-padded, one prefill, one jitted while_loop over
the new tokens with a KV cache); theirs is `LlamaForCausalLM.generate` (its KV cache, left padding
with an attention mask) on the checkpoint exported to a temporary HF folder. Greedy, stop ids
off (min_new_tokens for transformers), so every row makes exactly --new tokens. Both are warmed
up (compilation, torch's first calls) before timing; each figure is the median of --reps calls.
Prints one line per batch size, `ours/transformers batch B: R.RRx` (tokens/s ratio), after the
tokens/s of each and the share of rows whose tokens are identical.

The checkpoint defaults to the demo model; make it with
`python -m swahili100.demo --output demo_out --only download clean dedup filter train-tokenizer
tokenize train`.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, ".")  # run from the repo root
from swahili100 import generate, inference, lm, special_tokens  # noqa: E402

DEMO = "demo_out/runs/debug"
PROMPTS = [
    "Habari za asubuhi, leo",
    "Serikali imetangaza mpango mpya wa kujenga shule katika vijiji vya",
    "Mvua kubwa ilinyesha jana jioni katika mji wa",
    "Wakulima wa mahindi wanasema",
    "Daktari alimshauri mama yule",
    "Timu ya taifa ilishinda mechi ya jana kwa mabao",
    "Bei ya sukari imepanda sokoni na wananchi",
    "Mwalimu aliwafundisha wanafunzi jinsi ya kuandika",
]


def _median_s(fn, reps: int) -> float:
  fn()  # warm-up: compilation / first-call allocations, never timed
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--checkpoint", default=DEMO)
  p.add_argument("--new", type=int, default=64, help="new tokens per row")
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--batch-sizes", default="1,8")
  args = p.parse_args(argv)
  if args.checkpoint == DEMO and not os.path.exists(DEMO):
    print(f"bench/generate.py: {DEMO} not found; train the demo model with `python -m "
          "swahili100.demo --output demo_out --only download clean dedup filter train-tokenizer "
          "tokenize train`, or pass --checkpoint", file=sys.stderr)
    return 2
  import torch
  import transformers

  from swahili100.export import hf
  config, model = inference.load(args.checkpoint)
  tok = lm.load_tokenizer(config.data.tokenizer)
  folder = tempfile.mkdtemp(prefix="bench-generate-hf-")
  hf.export_hf(config, model, config.data.tokenizer, folder)
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
  print(f"{args.checkpoint}: d={model.config.d_model} L={model.config.num_layers} "
        f"V={model.config.vocab_size}; {args.new} new tokens per row, greedy, median of "
        f"{args.reps}; torch threads {torch.get_num_threads()}")
  lines = []
  for B in [int(b) for b in args.batch_sizes.split(",")]:
    prompts = [tok.encode(PROMPTS[i % len(PROMPTS)]).ids for i in range(B)]
    width = max(len(x) for x in prompts)
    ids = torch.full((B, width), special_tokens.PAD_ID, dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.long)
    for b, x in enumerate(prompts):  # left padding, as ours
      ids[b, width - len(x):] = torch.tensor(x)
      mask[b, width - len(x):] = 1
    ours_out, theirs_out = [], []

    def ours():
      ours_out[:] = generate.generate_batch(model, prompts, args.new, eos_id=None)

    def theirs():
      with torch.no_grad():
        out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=args.new,
                                min_new_tokens=args.new, do_sample=False, eos_token_id=None,
                                pad_token_id=special_tokens.PAD_ID)
      theirs_out[:] = out[:, width:].tolist()

    t_ours, t_theirs = _median_s(ours, args.reps), _median_s(theirs, args.reps)
    same = np.mean([a == b for a, b in zip(ours_out, theirs_out)])
    ours_tps, theirs_tps = B * args.new / t_ours, B * args.new / t_theirs
    print(f"batch {B}: ours {ours_tps:,.0f} tokens/s ({t_ours * 1e3:.1f} ms), transformers "
          f"{theirs_tps:,.0f} tokens/s ({t_theirs * 1e3:.1f} ms); identical rows {same:.0%}")
    lines.append(f"ours/transformers batch {B}: {ours_tps / theirs_tps:.2f}x")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
