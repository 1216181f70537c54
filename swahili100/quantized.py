"""The quantized weight format and its folder: what a `swahili100 quantize` output is, and its
reader (`inference.load` calls it; the quantizer, `export/quantize.py`, writes it).

Codes are unsigned: int4 packs two nibbles per uint8 along the input dim, int8 is one uint8
each; a float32 scale and a uint8 zero point per group of `group_size` input rows and output
column: w = (q - zero) * scale, dequantized on the fly inside the jitted forward.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from swahili100 import checkpoint, config_lib, fs
from swahili100 import model as model_lib

WEIGHTS = "quantized.safetensors"
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


class QuantWeight(nnx.Param):
  """Quantized codes, scales and zero points. A `Param` subclass so that code which splits a
  model with `nnx.split(model, nnx.Param)` (evaluate, the train eval step) carries them; a
  quantized model is for inference only and is never trained."""


def pack_int4(q_IO: np.ndarray) -> np.ndarray:
  """[I, O] codes in 0..15 -> [I/2, O] uint8 (row 2i in the low nibble, 2i+1 in the high)."""
  q = q_IO.astype(np.uint8)
  return (q[0::2] | (q[1::2] << 4)).astype(np.uint8)


def unpack_int4(p_HN):
  """[I/2, O] uint8 -> [I, O] uint8 codes (jnp or np)."""
  xp = jnp if isinstance(p_HN, jax.Array) else np
  lo, hi = p_HN & 0xF, p_HN >> 4
  return xp.stack([lo, hi], axis=1).reshape(-1, p_HN.shape[-1])


class QuantLinear(nnx.Module):
  """Drop-in for a bias-free `nnx.Linear`: y = x @ dequant(W); W = (q - zero) * scale."""

  def __init__(self, qweight, scale, zero, bits: int, group_size: int, dtype=jnp.float32):
    self.qweight = QuantWeight(jnp.asarray(qweight))
    self.scale = QuantWeight(jnp.asarray(scale, jnp.float32))
    self.zero = QuantWeight(jnp.asarray(zero, jnp.uint8))
    self.bits, self.group_size, self.dtype = bits, group_size, dtype

  @classmethod
  def empty(cls, d_in, d_out, bits, group_size, dtype=jnp.float32):
    rows = d_in // 2 if bits == 4 else d_in
    n_groups = d_in // group_size
    return cls(np.zeros((rows, d_out), np.uint8), np.zeros((n_groups, d_out), np.float32),
               np.zeros((n_groups, d_out), np.uint8), bits, group_size, dtype)

  def dequantized_kernel(self):
    q = self.qweight[...]
    q_IO = unpack_int4(q) if self.bits == 4 else q
    d_in, d_out = q_IO.shape
    g = self.group_size
    w = (q_IO.reshape(d_in // g, g, d_out).astype(jnp.float32)
         - self.zero[...][:, None].astype(jnp.float32)) * self.scale[...][:, None]
    return w.reshape(d_in, d_out)

  def __call__(self, x):
    w_IO = self.dequantized_kernel().astype(self.dtype)
    return jnp.dot(x.astype(self.dtype), w_IO)


def linear_paths(config_model) -> list[tuple[str, ...]]:
  c = model_lib.ModelConfig.from_any(config_model)
  out = []
  for i in range(c.num_layers):
    out += [("layers", str(i), "attn", n) for n in ATTN]
    out += [("layers", str(i), "mlp", n) for n in MLP
            if n != "gate_proj" or c.mlp_act == "swiglu"]  # relu2 has no gate
  return out


def get_path(module, path):
  for p in path:
    module = module[int(p)] if p.isdigit() else getattr(module, p)
  return module


def set_path(module, path, value):
  parent = get_path(module, path[:-1])
  setattr(parent, path[-1], value)


def is_quantized(path: str) -> bool:
  """True for a folder this module wrote (its config.json has a `quant` section)."""
  workdir, _ = config_lib.split_path(path)
  return fs.exists(fs.join(workdir, "config.json")) and "quant" in checkpoint.load_config(workdir)


def load(path: str):
  """(config, model) of a folder written by `swahili100 quantize`."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.exists(os.path.join(path, WEIGHTS)):
    raise FileNotFoundError(f"{path}/{WEIGHTS} not found: not a `swahili100 quantize` folder")
  config = config_lib.from_json(cfg_path)
  q = config.quant
  model = model_lib.Transformer(config.model, rngs=nnx.Rngs(0))
  tensors = load_file(os.path.join(path, WEIGHTS))
  for key in {k.rsplit(".", 1)[0] for k in tensors if k.endswith(".qweight")}:
    p = tuple(key.split("."))
    d_in, d_out = get_path(model, p).kernel.shape
    set_path(model, p, QuantLinear.empty(d_in, d_out, q.bits, q.group_size, model.dtype))
  for key, value in tensors.items():
    get_path(model, tuple(key.split(".")))[...] = jnp.asarray(value)
  return config, model
