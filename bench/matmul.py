"""The train step's matrix multiplies, one at a time: XLA:CPU (jitted `lax.dot_general`) vs torch.

    python bench/matmul.py --config configs/debug.py [--config.data.batch_size=8 ...] [--reps 30]

Each GEMM of the blocks and the head, forward and backward (the weight gradient contracts the
token axis M of both operands), at the config's shapes (M = batch_size x seq_len tokens), with
both sides given the operands in the layout the step holds them in: fp32, 2 threads, medians of
`--reps` calls of 8 GEMMs each (one jitted call, so dispatch costs little), the config's host
allocator as in `bench/train_step.py`. Prints GFLOP/s and ours/torch throughput per GEMM, and
one step's GEMM time (each GEMM times its count).
It answers where `bench/train_step.py`'s ratio comes from (docs/RESEARCH.md "GEMMs").
"""

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from swahili100 import config_lib, host_memory  # noqa: E402

FWD = (((1,), (0,)), ((), ()))     # x_MI @ w_IO
DX = (((1,), (1,)), ((), ()))      # dy_MO @ w_IO^T
DW = (((0,), (0,)), ((), ()))      # x_MI^T @ dy_MO
PER_CALL = 8  # GEMMs per timed call (distinct left operands), so dispatch costs ~nothing


def _h_transposed_first(x, y):
  """The step's form of the tied head's weight gradient (model._tied_logits_bwd)."""
  return jax.lax.optimization_barrier(x.T) @ y


def gemms(config):
  """name -> (lhs shape, rhs shape, dimension numbers, times per step[, our function]) for the
  blocks and the head (SwiGLU: gate and up share a shape; the attention's own score GEMMs are
  not included). Without a function ours is `lax.dot_general` with those dimensions."""
  m, d = config.model, config.data
  M, D, F, V = d.batch_size * d.seq_len, m.d_model, m.mlp_dim, m.vocab_size
  Q, KV, L = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim, m.num_layers
  out = {}
  for name, i, o, n in (("q_proj", D, Q, L), ("kv_proj", D, KV, 2 * L), ("o_proj", Q, D, L),
                        ("mlp_up", D, F, 2 * L), ("mlp_down", F, D, L)):
    out[f"{name} fwd"] = ((M, i), (i, o), FWD, n)
    out[f"{name} dx"] = ((M, o), (i, o), DX, n)
    out[f"{name} dw"] = ((M, i), (M, o), DW, n)
  out["head fwd"] = ((M, D), (D, V), FWD, 1)
  out["head dx"] = ((M, V), (D, V), DX, 1)
  out["head dw"] = ((M, D), (M, V), DW, 0)               # the plain form, for comparison
  out["head dw, h^T first"] = ((M, D), (M, V), DW, 1, _h_transposed_first)   # the step's
  return out


def median_ms(f, reps):
  f()
  f()
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    f()
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * 1e3


def torch_fn(a, b, dims):
  import torch  # noqa: PLC0415
  (ca,), (cb,) = dims[0]
  ta = torch.from_numpy(a) if ca == 1 else torch.from_numpy(a).T
  tb = torch.from_numpy(b) if cb == 0 else torch.from_numpy(b).T
  return lambda: torch.matmul(ta, tb)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/debug.py")
  p.add_argument("--reps", type=int, default=30)
  command_line = argv is None
  args, overrides = p.parse_known_args(sys.argv[1:] if argv is None else argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  malloc = host_memory.reexec(host_memory.policy(config.train), command_line)  # as train_step.py
  import torch  # noqa: PLC0415
  torch.set_num_threads(2)
  rng = np.random.RandomState(0)
  total = {"ours": 0.0, "torch": 0.0}
  print(f"{args.config} {' '.join(overrides)}: fp32 GEMMs on {jax.devices()[0].device_kind}, "
        f"median of {args.reps}, host_malloc {malloc}")
  for name, (a_shape, b_shape, dims, times, *fn) in gemms(config).items():
    a = [rng.randn(*a_shape).astype(np.float32) for _ in range(PER_CALL)]
    b = rng.randn(*b_shape).astype(np.float32)
    ja, jb = jax.device_put(a), jax.device_put(b)
    one = fn[0] if fn else functools.partial(jax.lax.dot_general, dimension_numbers=dims)
    f = jax.jit(lambda xs, y, one=one: [one(x, y) for x in xs])
    fns = [torch_fn(x, b, dims) for x in a]
    np.testing.assert_allclose(np.asarray(f(ja, jb)[-1]), fns[-1]().numpy(), rtol=1e-3, atol=1e-2)
    ours_ms = median_ms(lambda: jax.block_until_ready(f(ja, jb)), args.reps) / PER_CALL
    torch_ms = median_ms(lambda: [g() for g in fns], args.reps) / PER_CALL
    flop = 2.0 * a[0].size * (b_shape[1] if dims[0][1] == (0,) else b_shape[0])
    total["ours"] += times * ours_ms
    total["torch"] += times * torch_ms
    print(f"  {name:<20} {'x'.join(map(str, a_shape))} . {'x'.join(map(str, b_shape))}"
          f" dims {dims[0]}: ours {ours_ms:6.2f} ms {flop / ours_ms / 1e6:5.0f} GFLOP/s,"
          f" torch {torch_ms:6.2f} ms {flop / torch_ms / 1e6:5.0f} GFLOP/s"
          f"  x{times}  ours/torch {name}: {torch_ms / ours_ms:.2f}x")
  print(f"  one step's GEMMs (each times its count): ours {total['ours']:.1f} ms, torch "
        f"{total['torch']:.1f} ms,  ours/torch GEMM throughput: {total['torch'] / total['ours']:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
