"""One command for an accelerator: swahili_base's train step with AdamW and with Muon, and the
fast attention path against the reference.

    python bench/accelerator.py [--reps 10] [--json out.json] [--config.k=v ...]
    python bench/accelerator.py --tiny            # a tiny shape, on the CPU (tests/test_bench.py)
    bench/accelerator.sh prepare; bench/accelerator.sh run   # a lent H100/H200 (docs/benchmarks.md)

Hardware: whatever JAX sees (all its devices, one mesh as `configs/swahili_base.py` asks:
fsdp over them). Expected time: under 5 minutes on one H100 or H200 (two step compiles, two
optimizer compiles, 2 x (2 + reps) steps at ~0.3 s); `--tiny` ~25 s on a 2-core CPU, most of
it compiling.

For `configs/swahili_base.py` (bf16 compute, float32 parameters and optimizer state, its
64 x 2048 batch; `--config.k=v` overrides as training takes them) it builds the run's program
with `engine.build` (the jitted `lm.train_step`: loss, gradients, clipping, optimizer, NaN
guard, sharded as training shards it), once with `optim.name=adamw` and once with `muon`, and
times the step on a fixed batch of random tokens packed into documents of random lengths (the
segment ids and positions the loader makes). Per optimizer: median step time, tokens/s, MFU
(PaLM convention: `flops.flops_per_token` x tokens / step time / (peak x devices), peak from
`flops.peak_flops`, measured on CPU), the compiled step's memory (XLA's memory analysis:
arguments + outputs - donated + temporaries, the figure `swahili100 aot` reports), and the
device's peak bytes in use so far (`memory_stats()["peak_bytes_in_use"]`, cumulative over the
process, so Muon's, measured second, is the larger of the two; null where the backend keeps no
statistics, as on CPU). Should a step not fit, it retries with twice the gradient accumulation.

The optimizer's share of the step: the optimizer update alone (`tx.update` + `apply_updates`,
the clipping included, jitted by itself with the state donated, on a fixed gradient tree) timed
after the step, over the whole step's time (`optimizer_share`). The step difference Muon minus
AdamW is reported beside it (`muon.minus_adamw_ms`): the alone-time counts work XLA may overlap
inside the fused step, the difference counts Muon's extra cost over AdamW's.

Attention: the back-end `attention.resolve(config.model.attention, platform)` picks (cuDNN on a
GPU, splash on a TPU; on the CPU, where it picks the reference, the splash kernel run by the
Pallas interpreter, the TPU path's code) against `attention.reference_attention` in float32 on
the same inputs, packed segments with a padded tail, forward outputs: `attention_maxdiff` is
max |fast - reference|. The fast path runs in the compute dtype (bf16 on an accelerator:
`attention.ref_lowp_maxdiff` is the reference's own error in that dtype, the scale to read it
against; float32 with --tiny).

It prints a table and then, as its last line, one JSON object:
{"adamw": {"step_ms", "tokens_per_s", "mfu", "optimizer_ms", "optimizer_share", ...},
 "muon": {..., "minus_adamw_ms"}, "attention_maxdiff": ..., "attention": {...}, "device": ...}
"""

import argparse
import copy
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from swahili100 import aot, config_lib, engine, flops, lm, sharding  # noqa: E402
from swahili100 import attention as attention_lib  # noqa: E402
from swahili100 import model as model_lib  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "swahili_base.py")
# --tiny: swahili_base's code path at a shape a CPU steps in milliseconds (float32 there);
# T = 128 is the splash kernel's smallest block.
TINY = ["--config.model.vocab_size=256", "--config.model.d_model=64",
        "--config.model.num_layers=1", "--config.model.num_heads=4",
        "--config.model.num_kv_heads=2", "--config.model.head_dim=16",
        "--config.model.mlp_dim=128", "--config.model.dtype=float32",
        "--config.data.seq_len=128", "--config.data.batch_size=2"]
ATTENTION_ROWS = 4   # rows of the attention check (at the config's seq_len)
OPTIMIZERS = ("adamw", "muon")


def packed_segments(B: int, T: int, rs: np.random.RandomState) -> np.ndarray:
  """int32 [B, T] segment ids: documents of random lengths (1..T/2) packed into each row, ids
  from 1, and the last row's final eighth padding (segment 0), as the loader packs them."""
  seg_BT = np.zeros((B, T), np.int32)
  for b in range(B):
    end = T - T // 8 if b == B - 1 else T
    t, doc = 0, 1
    while t < end:
      n = min(end - t, int(rs.randint(1, max(2, T // 2))))
      seg_BT[b, t:t + n] = doc
      t, doc = t + n, doc + 1
  return seg_BT


def packed_batch(B: int, T: int, V: int, seed: int = 0) -> dict:
  """A language-model batch of random tokens in packed documents (lm.py's layout)."""
  rs = np.random.RandomState(seed)
  tokens = rs.randint(0, V, (B, T + 1)).astype(np.int32)
  seg_BT = packed_segments(B, T, rs)
  positions_BT = np.asarray(model_lib.segment_positions(jnp.asarray(seg_BT), B, T))
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": seg_BT,
          "positions": positions_BT.astype(np.int32), "mask": (seg_BT > 0).astype(np.int32)}


def timed(fn, reps: int, warmup: int = 2) -> float:
  """Median seconds of `reps` calls of `fn` (which blocks on its result) after `warmup`."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def peak_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def bench_task(config) -> engine.Task:
  return engine.Task("bench", loss_fn=functools.partial(lm.lm_loss, z_loss=config.optim.z_loss),
                     dataset=None)


def initial_params(config, mesh):
  """The run's initial parameters, placed as training places them (engine._Run without a
  checkpoint); both optimizers start from them."""
  prog = engine.build(config, mesh, bench_task(config))
  return jax.jit(lambda: nnx.split(model_lib.Transformer(
      prog.model_cfg, rngs=nnx.Rngs(config.train.seed)), nnx.Param)[1],
                 out_shardings=prog.shardings.params)()


def initial_state(prog: engine.Program, params) -> lm.TrainState:
  """A fresh TrainState over a copy of `params` (the step donates its state)."""
  shardings = prog.shardings
  params = jax.tree.map(jnp.copy, params)
  opt_state = jax.jit(prog.tx.init, out_shardings=shardings.opt_state)(params)
  return lm.TrainState(params, opt_state, jax.device_put(jnp.int32(0), shardings.step),
                       jax.device_put(jnp.int32(-1), shardings.first_bad))


def _update(params, opt_state, grads, *, tx):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def measure(config, mesh, batch, params, reps: int) -> dict:
  """The step of `config` (its optimizer) from `params`, and its optimizer update alone; see
  the docstring."""
  prog = engine.build(config, mesh, bench_task(config))
  box = [initial_state(prog, params)]
  t0 = time.perf_counter()
  step = prog.step_fn.lower(box[0], batch, None).compile()
  compile_s = time.perf_counter() - t0
  out = {}

  def run_step():
    box[0], out["metrics"] = step(box[0], batch, None)
    jax.block_until_ready(out["metrics"]["loss"])

  step_s = timed(run_step, reps)
  loss = float(out["metrics"]["loss"])
  # the update alone, last: it donates (consumes) the state the steps left
  grads = jax.jit(lambda p: jax.tree.map(lambda x: x * 1e-3, p))(box[0].params)
  update = jax.jit(functools.partial(_update, tx=prog.tx), donate_argnums=(0, 1)).lower(
      box[0].params, box[0].opt_state, grads).compile()
  opt = [box[0].params, box[0].opt_state]

  def run_update():
    opt[0], opt[1] = update(opt[0], opt[1], grads)
    jax.block_until_ready(opt[0])

  update_s = timed(run_update, reps)
  B, T = config.data.batch_size, config.data.seq_len
  peak = flops.peak_flops(mesh.devices.flat[0]) * mesh.devices.size   # NaN: kind not known
  mfu = flops.flops_per_token(prog.model_cfg, T) * B * T / step_s / peak
  return {"step_ms": step_s * 1e3, "tokens_per_s": B * T / step_s,
          "mfu": mfu if np.isfinite(mfu) else None,
          "optimizer_ms": update_s * 1e3, "optimizer_share": update_s / step_s,
          "compiled_bytes": aot._memory(step)["total"],
          "peak_bytes_in_use": peak_bytes(mesh.devices.flat[0]), "compile_s": compile_s,
          "loss": loss, "grad_accum": int(config.optim.grad_accum)}


def measure_fitting(config, mesh, batch, params, reps: int) -> dict:
  """`measure`, doubling the gradient accumulation while the step runs out of device memory."""
  config = copy.deepcopy(config)
  while True:
    try:
      return measure(config, mesh, batch, params, reps)
    except Exception as e:  # noqa: BLE001  XLA's out-of-memory error has no stable class
      accum = config.optim.grad_accum
      rows = config.data.batch_size // sharding.batch_size_divisor(mesh)
      if "RESOURCE_EXHAUSTED" not in str(e) or rows % (2 * accum):
        raise
      print(f"  {config.optim.name}: out of device memory at grad_accum={accum}, "
            f"retrying with {2 * accum}", flush=True)
      config.optim.grad_accum = 2 * accum


def fast_attention(path: str):
  """(label, fn) of the fast back-end `path` (on CPU: the splash kernel interpreted)."""
  if path == "reference":
    return "splash (Pallas interpreter)", functools.partial(
        attention_lib._splash_attention, interpret=True)
  return path, functools.partial(attention_lib.attention, implementation=path)


def attention_check(config, platform: str, reps: int) -> dict:
  """max |fast - reference| on packed segments, and both paths' forward times."""
  m = model_lib.resolve(config.model, platform)
  B, T, N, K, H = ATTENTION_ROWS, config.data.seq_len, m.num_heads, m.num_kv_heads, m.head_dim
  rs = np.random.RandomState(1)
  seg = jnp.asarray(packed_segments(B, T, rs))
  dtype = model_lib.DTYPES[m.dtype]
  q, k, v = (jnp.asarray(rs.randn(B, T, n, H), jnp.float32).astype(dtype).astype(jnp.float32)
             for n in (N, K, K))
  label, fast = fast_attention(m.attention)
  mask = attention_lib.causal_segment_mask(seg, T)
  ref = jax.jit(lambda q, k, v: attention_lib.reference_attention(q, k, v, mask))
  fast_fn = jax.jit(lambda q, k, v: fast(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                                         seg).astype(jnp.float32))
  lowp = jax.jit(lambda q, k, v: ref(*(x.astype(dtype) for x in (q, k, v))).astype(jnp.float32))
  want = ref(q, k, v)
  got = fast_fn(q, k, v)
  return {"path": label, "dtype": m.dtype, "shape": [B, T, N, K, H],
          "maxdiff": float(jnp.max(jnp.abs(got - want))),
          "ref_lowp_maxdiff": float(jnp.max(jnp.abs(lowp(q, k, v) - want))),
          "fast_ms": timed(lambda: fast_fn(q, k, v).block_until_ready(), reps) * 1e3,
          "reference_ms": timed(lambda: ref(q, k, v).block_until_ready(), reps) * 1e3}


def _gib(n) -> str:
  return "-" if n is None else f"{n / 2**30:.2f}"


def report(result: dict, config) -> None:
  """The table (the JSON line follows it)."""
  m, d = config.model, config.data
  print(f"swahili_base: V={m.vocab_size} d={m.d_model} L={m.num_layers} H={m.num_heads} "
        f"K={m.num_kv_heads} F={m.mlp_dim} T={d.seq_len} B={d.batch_size} {m.dtype} on "
        f"{result['device']['count']} x {result['device']['kind']}, median of "
        f"{result['reps']} steps")
  print(f"  {'optimizer':<9} {'step ms':>9} {'tokens/s':>12} {'MFU':>7} {'opt ms':>8} "
        f"{'share':>6} {'compiled GiB':>12} {'peak GiB':>9} {'compile s':>9}")
  for name in OPTIMIZERS:
    r = result[name]
    mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
    print(f"  {name:<9} {r['step_ms']:9.1f} {r['tokens_per_s']:12,.0f} {mfu:>7} "
          f"{r['optimizer_ms']:8.1f} {r['optimizer_share']:6.1%} "
          f"{_gib(r['compiled_bytes']):>12} {_gib(r['peak_bytes_in_use']):>9} "
          f"{r['compile_s']:9.1f}")
  mu = result["muon"]
  print(f"  muon - adamw: {mu['minus_adamw_ms']:+.1f} ms/step "
        f"({mu['minus_adamw_ms'] / mu['step_ms']:+.1%} of Muon's step)")
  a = result["attention"]
  print(f"  attention {a['path']} vs reference (float32), packed segments {a['shape']} "
        f"in {a['dtype']}: max|diff| {a['maxdiff']:.2e} (reference in {a['dtype']}: "
        f"{a['ref_lowp_maxdiff']:.2e}); forward {a['fast_ms']:.2f} ms vs {a['reference_ms']:.2f}")


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default=CONFIG)
  p.add_argument("--tiny", action="store_true", help="a tiny shape, for the CPU")
  p.add_argument("--reps", type=int, default=None, help="timed steps (default 10, --tiny 20)")
  p.add_argument("--json", default=None, help="also write the JSON object to this file")
  args, overrides = p.parse_known_args(argv)
  if args.tiny and not os.environ.get("JAX_PLATFORMS"):
    jax.config.update("jax_platforms", "cpu")   # libtpu, if installed, is not probed
  config = config_lib.apply_overrides(config_lib.load(args.config),
                                      (TINY if args.tiny else []) + overrides)
  reps = args.reps or (20 if args.tiny else 10)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch(config.data.batch_size, mesh)
  device = mesh.devices.flat[0]
  result = {"device": {"platform": device.platform, "kind": device.device_kind,
                       "count": int(mesh.devices.size), "jax": jax.__version__},
            "config": os.path.basename(args.config), "tiny": args.tiny, "reps": reps}
  with jax.set_mesh(mesh):
    batch = sharding.shard_batch(packed_batch(config.data.batch_size, config.data.seq_len,
                                              config.model.vocab_size), mesh)
    params = initial_params(config, mesh)
    for name in OPTIMIZERS:
      c = copy.deepcopy(config)
      c.optim.name = name
      result[name] = measure_fitting(c, mesh, batch, params, reps)
    del params
    result["muon"]["minus_adamw_ms"] = result["muon"]["step_ms"] - result["adamw"]["step_ms"]
    result["attention"] = attention_check(config, device.platform, reps)
  result["attention_maxdiff"] = result["attention"]["maxdiff"]
  report(result, config)
  line = json.dumps(result)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      f.write(line + "\n")
  print(line, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
