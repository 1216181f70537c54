"""Train-step throughput and MFU for a config, against PyTorch `transformers` on CPU.

    python bench/train_step.py --config configs/debug.py [--config.data.batch_size=8 ...] [--reps 10]

Times our full optimizer step (forward, backward, clipping, AdamW: `swahili100.lm.train_step`
with the language-model loss, jitted with `jax.jit`, as the engine runs it) on a fixed random
batch. Model switches come from the config (`--config.model.layout_vjps=off` ...), resolved for
this platform as training resolves them. On CPU it also times, interleaved in the same
process, a `transformers` `LlamaForCausalLM` of identical shape doing forward + backward + AdamW
on the same batch with 2 torch threads, and prints ours/peer throughput as a ratio (> 1: ours
faster). On GPU/TPU it prints tokens/s and MFU (PaLM convention, see `flops.flops_per_token`).
Also times the gradients alone, and prints the optimizer's share of our step (AdamW or Muon:
`--config.optim.name=muon`). Each line gives the page faults and system time per step; the
process runs with the config's host allocator (`--config.train.host_malloc=system`: glibc's),
and `--no-peer` / `--no-ours` time one side alone in its process.
"""

import argparse
import functools
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from swahili100 import config_lib, flops, host_memory, lm, model as model_lib, optim  # noqa: E402


def ours(config, tokens):
  m = model_lib.Transformer(model_lib.resolve(config.model), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(m, nnx.Param)
  tx, _ = optim.make(config.optim, config.train.num_steps)
  opt_state = tx.init(params)
  B, T = tokens.shape[0], tokens.shape[1] - 1
  batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]),
           "segment_ids": jnp.ones((B, T), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T)),
           "mask": jnp.ones((B, T), jnp.int32)}
  loss_fn = functools.partial(lm.lm_loss, z_loss=config.optim.z_loss)
  step = jax.jit(functools.partial(lm.train_step, graphdef=graphdef, tx=tx, loss_fn=loss_fn,
                                   grad_accum=config.optim.grad_accum), donate_argnums=0)
  box = [lm.TrainState(params=params, opt_state=opt_state, step=jnp.int32(0),
                       first_bad=jnp.int32(-1))]

  def run():
    box[0], metrics = step(box[0], batch, None)
    jax.block_until_ready(metrics["loss"])

  grad = jax.jit(jax.grad(lambda p: loss_fn(p, graphdef, None, batch)[0]))

  def grads_only():  # the step less clipping and the optimizer: their share is the difference
    jax.block_until_ready(grad(box[0].params))
  return run, grads_only


def peer(config, tokens):
  import torch  # noqa: PLC0415
  import transformers  # noqa: PLC0415
  torch.set_num_threads(2)
  torch.manual_seed(0)
  mc, o = config.model, config.optim
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=mc.vocab_size, hidden_size=mc.d_model, intermediate_size=mc.mlp_dim,
      num_hidden_layers=mc.num_layers, num_attention_heads=mc.num_heads,
      num_key_value_heads=mc.num_kv_heads, head_dim=mc.head_dim, rms_norm_eps=mc.norm_eps,
      rope_theta=mc.rope_theta, tie_word_embeddings=mc.tie_embeddings,
      attn_implementation="sdpa"))
  opt = torch.optim.AdamW(hf.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps,
                          weight_decay=o.weight_decay)
  t = torch.tensor(tokens, dtype=torch.long)

  def run():
    opt.zero_grad(set_to_none=True)
    logits = hf(t[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             t[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), o.grad_clip)
    opt.step()
  return run


def main(argv=None):
  command_line = argv is None
  argv = sys.argv[1:] if argv is None else argv
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/debug.py")
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
  p.add_argument("--no-ours", action="store_true",
                 help="time the PyTorch peer alone (its process, the config's host allocator)")
  args, overrides = p.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  # the host allocator as `swahili100 train` runs (re-executed with it when run as a script);
  # the torch peer shares the process and so the allocator (docs/benchmarks.md)
  malloc = host_memory.reexec(host_memory.policy(config.train), command_line)
  B, T, V = config.data.batch_size, config.data.seq_len, config.model.vocab_size
  tokens = np.random.RandomState(0).randint(0, V, (B, T + 1)).astype(np.int32)
  fns = {} if args.no_ours else dict(zip(("ours", "grads"), ours(config, tokens)))
  platform = jax.devices()[0].platform
  if platform == "cpu" and not args.no_peer:
    fns["torch"] = peer(config, tokens)
  for f in fns.values():  # compile / warm up
    f()
    f()
  times = {k: [] for k in fns}
  faults = {k: [] for k in fns}   # minor page faults and system seconds of each call
  for _ in range(args.reps):
    for k, f in fns.items():
      r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
      r1 = resource.getrusage(resource.RUSAGE_SELF)
      faults[k].append((r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime))
  med = {k: float(np.median(v)) for k, v in times.items()}
  step_flops = flops.flops_per_token(config.model, T) * B * T
  peak = flops.peak_flops(jax.devices()[0]) * jax.device_count()
  m = config.model
  print(f"{args.config} {' '.join(overrides)}: V={V} d={m.d_model} L={m.num_layers} "
        f"H={m.num_heads} K={m.num_kv_heads} F={m.mlp_dim} T={T} B={B} {m.dtype} on "
        f"{jax.devices()[0].device_kind}, median of {args.reps}, host_malloc {malloc}")
  for k, s in med.items():
    if k == "grads":
      continue
    minflt, stime = np.mean(faults[k], axis=0)
    print(f"  {k:<6} {s * 1e3:8.1f} ms/step  {B * T / s:10,.0f} tokens/s"
          + (f"  MFU {step_flops / s / peak:.1%}" if k == "ours" else "")
          + f"  page faults {minflt:,.0f}/step  system {stime * 1e3:.1f} ms/step")
  if "ours" not in med:
    return 0
  share = max(0.0, 1 - med["grads"] / med["ours"])
  print(f"  optimizer ({config.optim.name}) + clipping: {share:.1%} of our step "
        f"(gradients alone {med['grads'] * 1e3:.1f} ms)")
  if "torch" in med:
    print(f"  ours/torch throughput: {med['torch'] / med['ours']:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
