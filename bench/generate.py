"""Generation speed: tokens/s of `generate_ids` (KV cache) after compilation, and compile time.

    flock /tmp/swahili100-bench.lock .venv/bin/python bench/generate.py [--config configs/debug.py]

A randomly initialised model of the config's shape; a 4-token prompt; `--new` tokens sampled at
temperature 0.8, top-p 0.95, stop ids off so every call makes exactly `--new` tokens.
"""

import argparse
import sys
import time

import numpy as np
from flax import nnx

sys.path.insert(0, ".")  # run from the repo root
from swahili100 import config_lib, generate  # noqa: E402
from swahili100 import model as model_lib  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/debug.py")
  p.add_argument("--new", type=int, default=100)
  p.add_argument("--reps", type=int, default=5)
  args, overrides = p.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  model = model_lib.Transformer(config.model, rngs=nnx.Rngs(0))
  run = lambda seed: generate.generate_ids(model, [5, 6, 7, 8], args.new, temperature=0.8,  # noqa
                                           top_p=0.95, seed=seed, eos_id=None)
  t0 = time.perf_counter()
  run(0)
  first = time.perf_counter() - t0
  times = []
  for seed in range(1, args.reps + 1):
    t0 = time.perf_counter()
    assert len(run(seed)) == args.new
    times.append(time.perf_counter() - t0)
  med = float(np.median(times))
  m = config.model
  print(f"{args.config} {' '.join(overrides)}: V={m.vocab_size} d={m.d_model} L={m.num_layers}, "
        f"{args.new} new tokens: first call (with compilation) {first:.2f} s; then median "
        f"{med:.3f} s = {args.new / med:,.0f} tokens/s")


if __name__ == "__main__":
  main()
