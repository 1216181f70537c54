"""Phase 11: evaluate a checkpoint.

    swahili100 evaluate --checkpoint runs/debug [--records DIR] --metric loss|bpb|xcopa|all \
        [--max-batches N] [--xcopa ../shared/data/xcopa-sw/val.jsonl] [--output eval.json]

- loss, bpb: validation cross-entropy (nats/token) and bits per UTF-8 byte over the records'
  validation split (bpb is comparable across tokenizers; loss is not).
- xcopa: zero-shot XCOPA-sw accuracy. The premise is joined to each choice with "kwa sababu"
  (because; question = cause) or "kwa hiyo" (so; effect) and the choice with the higher summed
  log-likelihood wins (the XGLM/lm-eval-harness recipe). Chance is 50%.
"""

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import nnx

from swahili100 import checkpoint, data, train

DEFAULT_XCOPA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "xcopa-sw",
                             "val.jsonl")
CONNECTORS = {"cause": "kwa sababu", "effect": "kwa hiyo"}


def eval_loss_bpb(model, config, records_dir: str | None = None, max_batches: int = -1) -> dict:
  """{'loss', 'bpb', 'tokens'} of `model` over the validation split of `records_dir`."""
  config = config.copy_and_resolve_references()
  if records_dir:
    config.data.records_dir = records_dir
  manifest = data.check_manifest(config)
  graphdef, params = nnx.split(model, nnx.Param)
  step = jax.jit(functools.partial(train.eval_step, graphdef=graphdef))
  table = jnp.asarray(data.token_bytes(config.data.tokenizer, config.model.vocab_size))
  return train.eval_metrics(step, params, data.eval_batches(config, manifest, max_batches), table)


def _choice_logprob(forward, tok, context: str, choice: str, bucket: int = 64) -> float:
  ctx = tok.encode(context).ids
  full = tok.encode(context + " " + choice).ids
  n = len(full)
  length = -(-n // bucket) * bucket
  ids = np.zeros((1, length), np.int32)
  ids[0, :n] = full
  logp_TV = np.asarray(forward(jnp.asarray(ids))[0])
  start = max(len(ctx), 1)
  return float(sum(logp_TV[t - 1, full[t]] for t in range(start, n)))


def xcopa_accuracy(model, tokenizer_path: str, path: str) -> dict:
  """Zero-shot accuracy on an XCOPA jsonl file."""
  tok = tokenizers.Tokenizer.from_file(tokenizer_path)
  graphdef, params = nnx.split(model, nnx.Param)
  forward = jax.jit(lambda ids: jax.nn.log_softmax(nnx.merge(graphdef, params)(ids), axis=-1))
  correct = total = 0
  with open(path, encoding="utf-8") as f:
    for line in f:
      item = json.loads(line)
      context = f"{item['premise'].rstrip('.')} {CONNECTORS[item['question']]}"
      scores = [_choice_logprob(forward, tok, context, item[c][0].lower() + item[c][1:])
                for c in ("choice1", "choice2")]
      correct += int(np.argmax(scores) == item["label"])
      total += 1
  return {"xcopa_accuracy": correct / max(total, 1), "xcopa_items": total}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="swahili100 evaluate", description=__doc__.splitlines()[0])
  p.add_argument("--checkpoint", required=True, help="run folder or <workdir>/checkpoints/<step>")
  p.add_argument("--records", default=None, help="token records (default: the run's config)")
  p.add_argument("--metric", default="all", choices=["loss", "bpb", "xcopa", "all"])
  p.add_argument("--max-batches", type=int, default=-1, help="validation batches (-1 = all)")
  p.add_argument("--xcopa", default=DEFAULT_XCOPA, help="XCOPA-sw val.jsonl")
  p.add_argument("--output", default=None, help="JSON report (default <workdir>/eval.json)")
  args = p.parse_args(argv)
  config, model = checkpoint.load_model(args.checkpoint)
  report = {"checkpoint": args.checkpoint}
  if args.metric in ("loss", "bpb", "all"):
    report.update(eval_loss_bpb(model, config, args.records, args.max_batches))
  if args.metric in ("xcopa", "all"):
    if os.path.exists(args.xcopa):
      report.update(xcopa_accuracy(model, config.data.tokenizer, args.xcopa))
    else:
      print(f"evaluate: skipping xcopa: {args.xcopa} not found (pass --xcopa PATH)",
            file=sys.stderr)
  out = args.output or os.path.join(checkpoint.split_path(args.checkpoint)[0], "eval.json")
  with open(out, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  print(json.dumps(report, indent=2))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
