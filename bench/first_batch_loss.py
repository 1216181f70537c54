"""A continued run's first logged loss against its starting checkpoint's loss on that batch.

    .venv/bin/python bench/first_batch_loss.py --continued runs/small-continued --original runs/small

`--original` is the run the continued run started from, directly or through an export and
`swahili100 import` (docs/benchmarks.md "Continued pretraining"); the continued run must log
every step (`--config.train.log_every=1`). Prints one JSON object: both losses and their
relative difference (float32: ~1e-7 when the weights arrived unchanged).
"""

import argparse
import json
import sys

import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, ".")  # run from the repo root
from swahili100 import checkpoint, fs, inference, lm, loader  # noqa: E402


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--continued", required=True, help="the continued run folder")
  p.add_argument("--original", required=True, help="the run (or step) it started from")
  args = p.parse_args()
  config = checkpoint.load_config(args.continued)   # its data: the same first batch
  _, model = inference.load(args.original)
  graphdef, params = nnx.split(model, nnx.Param)
  batch = next(iter(loader.train_dataset(config, loader.check_manifest(config))))
  total, sums = lm.lm_loss(params, graphdef, None, {k: jnp.asarray(v) for k, v in batch.items()})
  rows = [json.loads(line) for line in
          fs.read_text(fs.join(args.continued, "logs", "training.jsonl")).splitlines()]
  first = next(r for r in rows if "loss" in r)
  original = float(total / sums["weight"])
  print(json.dumps({"original_loss_on_batch": original, "continued_step1_loss": first["loss"],
                    "step": first["step"], "rel": abs(first["loss"] - original) / original}))
  return 0 if first["step"] == 1 else 1


if __name__ == "__main__":
  sys.exit(main())
