"""Phases 7-10: train, log, checkpoint and resume.

    swahili100 train --config configs/debug.py --workdir runs/debug [--resume latest|<step dir>]
                     [--config.optim.lr=1e-3 --config.mesh.fsdp=2 ...]
    python -m swahili100.train ...   (same flags)

The hot step is a pure function of (params, opt_state, batch) jitted with `jax.jit` over the split
NNX state, parameters and optimizer moments sharded by `swahili100/sharding.py`. A workdir that
already holds checkpoints resumes from the newest automatically. SIGTERM (the Cloud TPU preemption
notice) saves at the next step and exits 0. A NaN/Inf loss stops the run, exit 1, without saving.
"""

import argparse
import functools
import json
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from swahili100 import checkpoint
from swahili100 import config_lib
from swahili100 import data
from swahili100 import model as model_lib
from swahili100 import optim
from swahili100 import sharding

# Peak dense bf16 FLOP/s per device, by substring of `device.device_kind`. CPU has no meaningful
# peak: its entry is a nominal 2 cores x 3 GHz x 32 fp32 FLOP/cycle (AVX2 FMA), so CPU MFU is
# only comparable with itself.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
              "TPU v5": 459e12, "TPU v6": 918e12, "H200": 989e12, "H100": 989e12,
              "A100": 312e12, "L4": 121e12, "T4": 65e12, "cpu": 200e9}


def flops_per_token(model_cfg, seq_len: int) -> float:
  """Training FLOPs per token, PaLM convention (Chowdhery et al. 2022, appendix B): 6N + 12·L·H·Q·T.

  N counts every parameter that takes part in a matmul per token: all parameters minus the input
  embedding lookup, except that a tied embedding counts once as the output head. L·H·Q·T is
  layers × query heads × head dim × sequence length (attention scores and values, forward and
  backward, counting the full T×T matrix as PaLM does, although causal masking skips half).
  """
  m = model_cfg
  n = model_lib.num_params(m) - (0 if m.tie_embeddings else m.vocab_size * m.d_model)
  return 6 * n + 12 * m.num_layers * m.num_heads * m.head_dim * seq_len


def peak_flops(device) -> float:
  kind = getattr(device, "device_kind", "") or device.platform
  for key, value in PEAK_FLOPS.items():
    if key.lower() in kind.lower():
      return value
  return PEAK_FLOPS["cpu"] if device.platform == "cpu" else float("nan")


def _sum_loss(params, graphdef, batch, z_loss: float):
  """Masked sums over one (micro-)batch: (nll + z·logZ², (nll, n_tokens))."""
  logits_BTV = nnx.merge(graphdef, params)(batch["inputs"], batch["segment_ids"],
                                           batch["positions"])
  mask_BT = batch["mask"].astype(jnp.float32)
  logz_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
  target_BT = jnp.take_along_axis(logits_BTV, batch["targets"][..., None], axis=-1)[..., 0]
  nll = jnp.sum((logz_BT - target_BT) * mask_BT)
  total = nll + z_loss * jnp.sum(logz_BT**2 * mask_BT) if z_loss else nll
  return total, (nll, jnp.sum(mask_BT))


def train_step(params, opt_state, first_bad, batch, step, *, graphdef, tx, grad_accum, z_loss):
  """One optimizer update over `grad_accum` micro-batches; returns new state and metrics.

  `first_bad` is the first step whose loss or gradient was not finite (-1 while all were): kept on
  device so the host only syncs on it at log and checkpoint steps.
  """
  grad_fn = jax.grad(_sum_loss, has_aux=True)
  if grad_accum == 1:
    grads, (nll, n) = grad_fn(params, graphdef, batch, z_loss)
  else:
    micro = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)

    def body(carry, mb):
      g, (nll_i, n_i) = grad_fn(params, graphdef, mb, z_loss)
      acc, nll_acc, n_acc = carry
      return (jax.tree.map(jnp.add, acc, g), nll_acc + nll_i, n_acc + n_i), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, nll, n), _ = jax.lax.scan(body, (zeros, 0.0, 0.0), micro)
  n = jnp.maximum(n, 1.0)
  grads = jax.tree.map(lambda g: g / n, grads)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  loss, grad_norm = nll / n, optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  first_bad = jnp.where((first_bad < 0) & ~finite, step, first_bad)
  return params, opt_state, first_bad, {"loss": loss, "grad_norm": grad_norm, "tokens": n}


def eval_step(params, batch, token_bytes_V, *, graphdef):
  """(sum nats, sum bytes, tokens) of one validation batch."""
  _, (nll, n) = _sum_loss(params, graphdef, batch, 0.0)
  nbytes = jnp.sum(token_bytes_V[batch["targets"]] * batch["mask"])
  return nll, nbytes.astype(jnp.float32), n


def eval_metrics(eval_fn, params, batches, token_bytes_V, place=lambda b: b) -> dict:
  """{'loss', 'bpb', 'tokens'} of a jitted `eval_step` summed over `batches` (placed by `place`)."""
  sums = np.zeros(3)
  for batch in batches:
    sums += np.array([float(x) for x in eval_fn(params, place(batch), token_bytes_V)])
  return {"loss": sums[0] / max(sums[2], 1.0), "bpb": data.bits_per_byte(sums[0], sums[1]),
          "tokens": int(sums[2])}


class Preemption:
  """Turns SIGTERM into a flag the loop checks at each step boundary."""

  def __init__(self):
    self.requested = False
    signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True


def _log(path: str, row: dict) -> None:
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def run(config, workdir: str, resume: str | None = None) -> int:
  """Trains `config` in `workdir`; returns the process exit code."""
  sharding.maybe_initialize_distributed(config)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch(config.data.batch_size, mesh)
  # Absolute paths in config.json, so generate/evaluate/export work from any directory.
  config.data.records_dir = os.path.abspath(config.data.records_dir)
  config.data.tokenizer = os.path.abspath(config.data.tokenizer)
  manifest = data.check_manifest(config)
  t_cfg, d_cfg = config.train, config.data
  is_main = jax.process_index() == 0
  os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
  mngr = checkpoint.manager(workdir, t_cfg)
  start = checkpoint.resolve_resume(workdir, resume, mngr)
  if start is not None:
    checkpoint.check_same_model(workdir, config)
  if is_main:  # written only once the resume point is known to be valid
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2) + "\n")
  log_path = os.path.join(workdir, "logs", "training.jsonl")

  # Model, optimizer and their shardings; parameters are created already sharded.
  abstract_model = nnx.eval_shape(lambda: model_lib.Transformer(config.model, rngs=nnx.Rngs(0)))
  graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
  tx, lr_fn = optim.make(config.optim, t_cfg.num_steps)
  p_shard = sharding.param_shardings(abstract_params, mesh)
  o_shard = sharding.param_shardings(jax.eval_shape(tx.init, abstract_params), mesh)
  init_params = jax.jit(
      lambda: nnx.split(model_lib.Transformer(config.model, rngs=nnx.Rngs(t_cfg.seed)),
                        nnx.Param)[1], out_shardings=p_shard)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  b_shard = sharding.batch_sharding(mesh)
  step_fn = jax.jit(
      functools.partial(train_step, graphdef=graphdef, tx=tx, grad_accum=config.optim.grad_accum,
                        z_loss=config.optim.z_loss),
      in_shardings=(p_shard, o_shard, replicated, b_shard, replicated),
      out_shardings=(p_shard, o_shard, replicated, replicated), donate_argnums=(0, 1))
  eval_fn = jax.jit(functools.partial(eval_step, graphdef=graphdef))
  token_bytes_V = jnp.asarray(data.token_bytes(d_cfg.tokenizer, config.model.vocab_size))

  dataset = data.train_dataset(config, manifest, jax.process_index(), jax.process_count())
  batches = iter(dataset)
  if start is None:
    params = init_params()
    opt_state = jax.jit(tx.init, out_shardings=o_shard)(params)
    start = 0
  else:
    abstract = lambda tree, shard: jax.tree.map(  # noqa: E731
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shard)
    params, opt_state, meta, data_state = checkpoint.restore(
        mngr, start, abstract(abstract_params, p_shard),
        abstract(jax.eval_shape(tx.init, abstract_params), o_shard))
    batches.set_state(data_state)
    for key, now in (("seed", t_cfg.seed), ("shuffle_seed", d_cfg.shuffle_seed)):
      if meta.get(key, now) != now:
        print(f"warning: checkpoint {start} was trained with {key}={meta[key]}, now {now}; "
              "the resumed run will not reproduce the original", file=sys.stderr, flush=True)
    print(f"resumed from {workdir}/checkpoints/{start} (step {meta['step']})", flush=True)
  first_bad = jax.device_put(jnp.int32(-1), replicated)

  preempt = Preemption()
  multihost = jax.process_count() > 1
  tokens_per_step = d_cfg.batch_size * d_cfg.seq_len
  flops_step = flops_per_token(config.model, d_cfg.seq_len) * tokens_per_step
  peak = peak_flops(jax.devices()[0]) * jax.device_count()

  def evaluate(step):
    m = eval_metrics(eval_fn, params, data.eval_batches(config, manifest, t_cfg.eval_batches),
                     token_bytes_V, lambda b: sharding.shard_batch(b, mesh))
    if is_main:
      _log(log_path, {"step": step, "eval_loss": m["loss"], "eval_bpb": m["bpb"],
                      "eval_tokens": m["tokens"]})
      print(f"\nstep {step}: eval loss {m['loss']:.4f}, bits/byte {m['bpb']:.4f}", flush=True)

  def save(step, force=False):
    bad = int(first_bad)
    if bad >= 0:
      return bad
    # No op in the step draws randomness (no dropout), so the RNG state is its seeds.
    meta = {"step": step, "seed": t_cfg.seed, "shuffle_seed": d_cfg.shuffle_seed}
    checkpoint.save(mngr, step, params, opt_state, meta, batches.get_state(), force)
    return -1

  def nan_exit(bad):
    mngr.wait_until_finished()
    last = mngr.latest_step()
    where = f"{workdir}/checkpoints/{last}" if last is not None else "none saved yet"
    print(f"\nERROR: the loss or gradient became NaN/Inf at step {bad + 1}; stopping without "
          f"saving. Last good checkpoint: {where}. Lower --config.optim.lr, raise "
          "--config.optim.warmup_steps, or set --config.optim.z_loss=1e-4, then resume.",
          file=sys.stderr, flush=True)
    return 1

  t_last, step_last, compile_s = time.perf_counter(), start, None
  for step in range(start, t_cfg.num_steps):
    batch = sharding.shard_batch(next(batches), mesh)
    params, opt_state, first_bad, metrics = step_fn(params, opt_state, first_bad, batch,
                                                    jnp.int32(step))
    done = step + 1
    if compile_s is None:
      jax.block_until_ready(metrics)
      compile_s = time.perf_counter() - t_last
      t_last, step_last = time.perf_counter(), done
    if done % t_cfg.log_every == 0 or done == t_cfg.num_steps:
      m = jax.device_get(metrics)
      if int(first_bad) >= 0:
        return nan_exit(int(first_bad))
      now = time.perf_counter()
      tok_s = tokens_per_step * (done - step_last) / max(now - t_last, 1e-9)
      row = {"step": done, "loss": float(m["loss"]), "lr": float(lr_fn(step)),
             "grad_norm": float(m["grad_norm"]), "tokens_per_s": tok_s,
             "mfu": flops_step * (done - step_last) / max(now - t_last, 1e-9) / peak,
             "tokens_seen": done * tokens_per_step, "compile_s": compile_s}
      t_last, step_last = now, done
      if is_main:
        _log(log_path, row)
        print(f"\rstep {done}/{t_cfg.num_steps}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
              f"gnorm {row['grad_norm']:.2f}  {tok_s:,.0f} tok/s  mfu {row['mfu']:.1%}",
              end="", file=sys.stderr, flush=True)
    if t_cfg.eval_every and done % t_cfg.eval_every == 0 and done != t_cfg.num_steps:
      evaluate(done)
    stop = preempt.requested or (multihost and mngr.reached_preemption(done))
    if stop or done % t_cfg.checkpoint_every == 0 or done == t_cfg.num_steps:
      bad = save(done, force=True)
      if bad >= 0:
        return nan_exit(bad)
    if stop:
      mngr.wait_until_finished()
      print(f"\npreemption: saved {workdir}/checkpoints/{done}; exiting 0 "
            "(rerun the same command to resume)", flush=True)
      return 0
  if start < t_cfg.num_steps:  # a rerun of a finished run trains and evaluates nothing
    evaluate(t_cfg.num_steps)
  else:
    print(f"{workdir} already reached step {t_cfg.num_steps}; nothing to train "
          "(raise --config.train.num_steps to continue)", flush=True)
  mngr.wait_until_finished()
  mngr.close()
  print(f"done: {workdir}/checkpoints/{mngr.latest_step()}", flush=True)
  return 0


def parse_args(argv: list[str]):
  """(config, workdir, resume) from `--config F --workdir W [--resume R] [--config.k=v ...]`."""
  p = argparse.ArgumentParser(prog="swahili100 train", description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="config file, e.g. configs/debug.py[:arg]")
  p.add_argument("--workdir", required=True, help="run folder: config.json, logs/, checkpoints/")
  p.add_argument("--resume", default=None,
                 help="'latest' or <workdir>/checkpoints/<step> (default: latest if any)")
  args, overrides = p.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  return config, args.workdir, args.resume


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    config, workdir, resume = parse_args(argv)
    return run(config, workdir, resume)
  except (config_lib.ConfigError, ValueError, FileNotFoundError) as e:
    print(f"swahili100 train: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
