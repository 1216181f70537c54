"""Model ablations: forward+backward time of model variants vs torch LlamaForCausalLM, interleaved.

    flock /tmp/swahili100-bench.lock env V=2048 TIE=1 REPS=12 \
      VARIANTS="{'off,chunks1': {'layout_vjps': 'off', 'causal_chunks': 1}, 'default': {}}" \
      .venv/bin/python bench/model_variants.py

VARIANTS maps a name to `config.model` fields (layout_vjps, causal_chunks, remat, attention, ...)
that the variant's model is built with; nothing is patched. Prints each variant's median time and
its speed vs torch at d=256, L=4, H=4, K=2, F=768, B=8, T=256, float32.
"""
import ast
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import transformers
from flax import nnx

sys.path.insert(0, ".")  # run from the repo root
from configs.debug import get_config  # noqa: E402
from swahili100 import model as model_lib  # noqa: E402

V = int(os.environ.get("V", 2048))
B, T = 8, 256
REPS = int(os.environ.get("REPS", 10))
TIE = os.environ.get("TIE", "1") == "1"
VARIANTS = ast.literal_eval(os.environ.get("VARIANTS", "{'default': {}}"))


def jax_step(settings: dict, tok):
  cfg = get_config().model
  cfg.update(vocab_size=V, d_model=256, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=64,
             mlp_dim=768, tie_embeddings=TIE, dtype="float32", **settings)
  g, p = nnx.split(model_lib.Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)

  def loss(p, tok):
    logits = nnx.merge(g, p)(tok[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tok[:, 1:]).mean()
  f = jax.jit(jax.value_and_grad(loss)).lower(p, tok).compile()
  return lambda: jax.block_until_ready(f(p, tok))


def torch_step(tok):
  torch.set_num_threads(2)
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=V, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
      num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=TIE))
  ttok = torch.tensor(tok)

  def step():
    hf.zero_grad(set_to_none=True)
    out = hf(ttok[:, :-1]).logits
    torch.nn.functional.cross_entropy(out.reshape(-1, V), ttok[:, 1:].reshape(-1)).backward()
  return step


def main():
  tok = np.random.RandomState(0).randint(0, V, (B, T + 1))
  fns = {"torch": torch_step(tok)}
  fns.update({name: jax_step(s, jnp.asarray(tok)) for name, s in VARIANTS.items()})
  for f in fns.values():
    f()
    f()
  times = {k: [] for k in fns}
  for _ in range(REPS):
    for k, f in fns.items():
      t0 = time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
  tm = np.median(times["torch"])
  print(f"V={V} tie={TIE} B={B} T={T} d=256 L=4 H=4 K=2 F=768 fp32, median of {REPS}: "
        f"torch {tm * 1e3:.1f} ms")
  for k in VARIANTS:
    print(f"  {k:<28} {np.median(times[k]) * 1e3:7.1f} ms   speed vs torch "
          f"{tm / np.median(times[k]):.2f}x")


if __name__ == "__main__":
  main()
