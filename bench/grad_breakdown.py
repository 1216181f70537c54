"""Where the CPU train step's time goes: forward vs gradient by depth, and the weight-gradient dot.

    flock /tmp/swahili100-bench.lock .venv/bin/python bench/grad_breakdown.py [--config configs/debug.py]

Prints forward+loss and gradient times of the config's model with 0 blocks and with all of them,
with `config.model.layout_vjps` on and off (each a config of its own, nothing patched), and the
two layouts of the tied head's embedding gradient at the config's shape: `(h^T · dlogits)^T` as
XLA folds it, and with `_keep_layout`.
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, ".")  # run from the repo root
from swahili100 import config_lib, lm  # noqa: E402
from swahili100 import model as model_lib  # noqa: E402


def bench(f, *args, reps=15):
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * 1e3


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/debug.py")
  args, overrides = p.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  m, d = config.model, config.data
  B, T, V, D = d.batch_size, d.seq_len, m.vocab_size, m.d_model
  tokens = np.random.RandomState(0).randint(0, V, (B, T + 1)).astype(np.int32)
  batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]),
           "segment_ids": jnp.ones((B, T), jnp.int32), "mask": jnp.ones((B, T), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))}
  loss = lambda q, g: lm.lm_loss(q, g, None, batch)[0]  # noqa: E731
  print(f"{args.config} {' '.join(overrides)}: V={V} d={D} T={T} B={B}, median ms")
  for layout in ("on", "off"):
    for layers in (0, m.num_layers):
      c = m.copy_and_resolve_references()
      c.update(num_layers=layers, layout_vjps=layout)
      g, params = nnx.split(model_lib.Transformer(c, rngs=nnx.Rngs(0)), nnx.Param)
      fwd = bench(jax.jit(lambda q, g=g: loss(q, g)), params)
      grad = bench(jax.jit(jax.grad(lambda q, g=g: loss(q, g))), params)
      print(f"  layout_vjps={layout:<3} layers={layers}: forward {fwd:6.1f}  "
            f"gradient {grad:6.1f}  ({grad / fwd:.1f}x)")
  h_MD = jax.random.normal(jax.random.key(0), (B * T, D))
  dl_MV = jax.random.normal(jax.random.key(1), (B * T, V))
  folded = bench(jax.jit(lambda h, dl: jnp.dot(h.T, dl).T), h_MD, dl_MV)
  kept = bench(jax.jit(lambda h, dl: model_lib._keep_layout(jnp.dot(h.T, dl)).T), h_MD, dl_MV)
  print(f"  embedding gradient (h^T dl)^T [{B * T}x{D}]^T[{B * T}x{V}]: folded {folded:.1f}, "
        f"with _keep_layout {kept:.1f}")


if __name__ == "__main__":
  main()
