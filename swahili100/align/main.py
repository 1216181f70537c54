"""Phase 12: `swahili100 align --stage sft|dpo`.

    swahili100 align --stage sft --checkpoint runs/debug --data sft.jsonl --workdir runs/sft
    swahili100 align --stage dpo --checkpoint runs/sft --data dpo.jsonl --workdir runs/dpo \
        [--beta 0.1 --steps 40 --lr 1e-4 --batch-size 8 --seq-len 128 --seed 0]

SFT data: one `{"messages": [{"role", "content"}, ...]}` per line; the loss covers assistant
tokens only (the training step of `swahili100/train.py` with a chat mask). DPO data: one
`{"prompt": [messages], "chosen": str, "rejected": str}` per line; the loss is
-log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]) with the starting model as the
frozen reference (Rafailov et al. 2023). The output workdir has the layout of a training run
(`config.json`, `logs/training.jsonl`, `checkpoints/<step>`), so generate, evaluate, quantize and
export take it as they are.
"""

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tokenizers
from flax import nnx

from swahili100 import checkpoint, optim, train
from swahili100.align import chat

SAMPLES = os.path.dirname(__file__)


def _read_jsonl(path: str) -> list[dict]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{n}: not valid JSON ({e}); fix or remove that line") from e
  if not rows:
    raise ValueError(f"{path} holds no examples")
  return rows


def _sum_logp(params, graphdef, batch):
  """Per-row sum of log p(target) over masked targets."""
  logits_BTV = nnx.merge(graphdef, params)(batch["inputs"], batch["segment_ids"],
                                           batch["positions"])
  logp_BTV = jax.nn.log_softmax(logits_BTV, axis=-1)
  tgt_BT = jnp.take_along_axis(logp_BTV, batch["targets"][..., None], axis=-1)[..., 0]
  return jnp.sum(tgt_BT * batch["mask"], axis=-1)


def dpo_step(params, opt_state, chosen, rejected, ref_c_B, ref_r_B, *, graphdef, tx, beta):
  def loss_fn(p):
    margin_B = beta * ((_sum_logp(p, graphdef, chosen) - ref_c_B)
                       - (_sum_logp(p, graphdef, rejected) - ref_r_B))
    return -jnp.mean(jax.nn.log_sigmoid(margin_B)), margin_B

  (loss, margin_B), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, {
      "loss": loss, "reward_accuracy": jnp.mean(margin_B > 0), "margin": jnp.mean(margin_B),
      "grad_norm": optax.tree.norm(grads)}


def _dpo_batches(tok, rows, seq_len):
  chosen, rejected = [], []
  for r in rows:
    for out, answer in ((chosen, r["chosen"]), (rejected, r["rejected"])):
      out.append(chat.encode(tok, r["prompt"] + [{"role": "assistant", "content": answer}]))
  return chat.to_rows(chosen, seq_len), chat.to_rows(rejected, seq_len)


def _finished(args) -> bool:
  """True when `--workdir` already holds this exact alignment run; raises if it holds another."""
  ckpts = os.path.join(args.workdir, "checkpoints")
  if not os.path.isdir(ckpts) or not any(d.isdigit() for d in os.listdir(ckpts)):
    return False
  saved = checkpoint.load_config(args.workdir)
  want = {"stage": args.stage, "data": args.data, "base": args.checkpoint, "beta": args.beta,
          "steps": args.steps, "lr": args.lr}
  have = {**saved.align.to_dict(), "steps": saved.train.num_steps, "lr": saved.optim.lr}
  diff = [f"{k}: saved {have.get(k)!r}, now {v!r}" for k, v in want.items() if have.get(k) != v]
  if diff:
    raise ValueError(f"{args.workdir} already holds a different alignment run ({'; '.join(diff)}); "
                     "use a new --workdir")
  return True


def run(args) -> int:
  if _finished(args):
    print(f"{args.stage}: {args.workdir} already holds this run (step {args.steps}); nothing to do")
    return 0
  config, model = checkpoint.load_model(args.checkpoint)
  tok = tokenizers.Tokenizer.from_file(config.data.tokenizer)
  rows = _read_jsonl(args.data)
  with config.unlocked():
    config.optim.update(lr=args.lr, warmup_steps=max(1, args.steps // 10), grad_accum=1)
    config.train.update(num_steps=args.steps)
    config.align = {"stage": args.stage, "data": args.data, "base": args.checkpoint,
                    "beta": args.beta}
  graphdef, params = nnx.split(model, nnx.Param)
  tx, lr_fn = optim.make(config.optim, args.steps)
  opt_state = tx.init(params)
  os.makedirs(os.path.join(args.workdir, "logs"), exist_ok=True)
  with open(os.path.join(args.workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2) + "\n")
  log = open(os.path.join(args.workdir, "logs", "training.jsonl"), "w", encoding="utf-8")
  rng = np.random.default_rng(args.seed)
  pick = lambda tree, idx: jax.tree.map(lambda x: jnp.asarray(x[idx]), tree)  # noqa: E731

  if args.stage == "sft":
    data = chat.to_rows([chat.encode(tok, r["messages"]) for r in rows], args.seq_len)
    step_fn = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx, grad_accum=1,
                                        z_loss=0.0), donate_argnums=(0, 1))
    bad = jnp.int32(-1)
  else:
    chosen, rejected = _dpo_batches(tok, rows, args.seq_len)
    ref = jax.jit(functools.partial(_sum_logp, graphdef=graphdef))
    ref_c, ref_r = np.asarray(ref(params, batch=chosen)), np.asarray(ref(params, batch=rejected))
    step_fn = jax.jit(functools.partial(dpo_step, graphdef=graphdef, tx=tx, beta=args.beta),
                      donate_argnums=(0, 1))

  for step in range(args.steps):
    idx = rng.choice(len(rows), size=min(args.batch_size, len(rows)), replace=False)
    if args.stage == "sft":
      params, opt_state, bad, m = step_fn(params, opt_state, bad, pick(data, idx), jnp.int32(step))
    else:
      params, opt_state, m = step_fn(params, opt_state, pick(chosen, idx), pick(rejected, idx),
                                     jnp.asarray(ref_c[idx]), jnp.asarray(ref_r[idx]))
    row = {"step": step + 1, "lr": float(lr_fn(step)),
           **{k: float(v) for k, v in jax.device_get(m).items() if k != "tokens"}}
    if not np.isfinite(row["loss"]):
      print(f"align: loss became NaN/Inf at step {step + 1}; lower --lr", file=sys.stderr)
      return 1
    log.write(json.dumps(row) + "\n")
    print(f"\r{args.stage} step {step + 1}/{args.steps} loss {row['loss']:.4f}", end="",
          file=sys.stderr, flush=True)
  log.close()
  with config.unlocked():
    config.train.keep_every = 0
  mngr = checkpoint.manager(args.workdir, config.train)
  checkpoint.save(mngr, args.steps, params, opt_state, {"step": args.steps}, {}, force=True)
  mngr.wait_until_finished()
  mngr.close()
  print(f"\n{args.stage}: saved {args.workdir}/checkpoints/{args.steps}")
  return 0


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="swahili100 align", description=__doc__.splitlines()[0])
  p.add_argument("--stage", required=True, choices=["sft", "dpo"])
  p.add_argument("--checkpoint", required=True, help="run folder or <workdir>/checkpoints/<step>")
  p.add_argument("--data", default=None,
                 help="jsonl examples (default: the embedded sample_<stage>.jsonl)")
  p.add_argument("--workdir", required=True, help="output run folder")
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--lr", type=float, default=1e-4)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--seq-len", type=int, default=256)
  p.add_argument("--beta", type=float, default=0.1, help="DPO temperature")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  args.data = args.data or os.path.join(SAMPLES, f"sample_{args.stage}.jsonl")
  try:
    return run(args)
  except (ValueError, FileNotFoundError) as e:
    print(f"swahili100 align: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
