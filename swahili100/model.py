"""Llama-style decoder in Flax NNX, numerically matching Hugging Face `LlamaForCausalLM`.

    m = Transformer(config.model, rngs=nnx.Rngs(0))
    logits_BTV = m(tokens_BT, segment_ids_BT=None, positions_BT=None)   # float32
    (positions default to 0.. per segment: they restart wherever segment_ids_BT changes)
    cache = init_cache(config.model, batch, max_len)
    logits_BTV, cache = m.decode(tokens_BT, positions_BT, cache)          # prefill, then T = 1
    (decode(..., valid_BS) masks cache slots, e.g. the left padding of batched prompts)

Parameters are float32; `config.model.dtype` (float32 | bfloat16) is the compute dtype: kernels
are cast inside each projection, while RMSNorm statistics, softmax and logits stay float32.
Init: normal(init_std) for embedding and projections, normal(init_std / sqrt(2 L)) for the two
residual-output projections (o_proj, down_proj; GPT-2 / Megatron; zeros with zero_init_out),
ones for norm scales. Switches (all off = Llama): qk_norm, mlp_act, logit_softcap,
zero_init_out, tie_embeddings; `swahili100 export` maps or refuses each (export/hf.py SWITCHES).
Names: B batch, T query length, S key length, D d_model, N query heads, K kv heads, G = N / K,
H head_dim, F mlp_dim, V vocab, L layers.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from swahili100 import attention as attention_lib
from swahili100 import config_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MLP_ACTS = ("swiglu", "relu2")
ROPE_TYPES = ("default", "llama3")
REMAT_POLICIES = {
    "full": None,  # save nothing inside a block: recompute it all in the backward pass
    # save projection matmul outputs (no batch dims), recompute attention scores and elementwise
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The `config.model` fields as a hashable value (kept on the module as static data)."""
  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float = 10000.0
  rope_type: str = "default"  # default | llama3 (Llama 3.1+ frequency scaling, the fields below)
  rope_factor: float = 8.0            # llama3: long wavelengths divided by this
  rope_low_freq_factor: float = 1.0   # llama3: wavelengths above original / this are scaled
  rope_high_freq_factor: float = 4.0  # llama3: below original / this kept; between: blended
  rope_original_max_len: int = 8192   # llama3: the context length the base was trained at
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  init_std: float = 0.02
  dtype: str = "float32"
  attention: str = "reference"
  remat: str = "none"
  layout_vjps: str = "auto"   # on | off | auto (on for CPU only): the XLA:CPU weight-gradient VJPs
  causal_chunks: int = 4      # reference attention: query chunks that skip the upper triangle
  loss_chunks: int = 0        # > 0: the training loss never holds [B, T, V] logits (see fused_nll_sums)
  qk_norm: bool = False       # RMSNorm (scale [H]) on each query and key head before RoPE
  mlp_act: str = "swiglu"     # swiglu: down(silu(gate x) * up x) | relu2: down(relu(up x)^2)
  logit_softcap: float = 0.0  # logits -> cap * tanh(logits / cap); 0 = off
  zero_init_out: bool = False  # o_proj and down_proj initialised to zero

  @classmethod
  def from_any(cls, cfg: Any) -> "ModelConfig":
    if isinstance(cfg, cls):
      return cfg
    names = [f.name for f in dataclasses.fields(cls)]
    values = {k: config_lib.get(cfg, k) for k in names if config_lib.get(cfg, k) is not None}
    c = cls(**values)
    config_lib.check_heads(c.num_heads, c.num_kv_heads)
    if c.rope_type not in ROPE_TYPES:
      raise config_lib.ConfigError(f"config.model.rope_type={c.rope_type!r}: expected one of "
                                   f"{ROPE_TYPES}")
    if c.head_dim % 2:
      raise config_lib.ConfigError(f"config.model.head_dim={c.head_dim} must be even for RoPE")
    if c.dtype not in DTYPES:
      raise config_lib.ConfigError(f"config.model.dtype={c.dtype!r}: expected one of "
                                   f"{list(DTYPES)}")
    if c.remat not in ("none", *REMAT_POLICIES):
      raise config_lib.ConfigError(f"config.model.remat={c.remat!r}: expected none | full | dots")
    if c.attention not in attention_lib.IMPLEMENTATIONS:
      raise config_lib.ConfigError(f"config.model.attention={c.attention!r}: expected one of "
                                   f"{attention_lib.IMPLEMENTATIONS}")
    if c.layout_vjps not in ("on", "off", "auto"):
      raise config_lib.ConfigError(f"config.model.layout_vjps={c.layout_vjps!r}: expected "
                                   "on | off | auto")
    if c.mlp_act not in MLP_ACTS:
      raise config_lib.ConfigError(f"config.model.mlp_act={c.mlp_act!r}: expected one of "
                                   f"{MLP_ACTS}")
    if c.logit_softcap < 0:
      raise config_lib.ConfigError(f"config.model.logit_softcap={c.logit_softcap}: expected 0 "
                                   "(off) or a positive cap such as 15 or 30")
    if c.loss_chunks < 0:
      raise config_lib.ConfigError(f"config.model.loss_chunks={c.loss_chunks} must be >= 0 "
                                   "(0 = off)")
    if c.causal_chunks < 1:
      raise config_lib.ConfigError(f"config.model.causal_chunks={c.causal_chunks} must be >= 1 "
                                   "(1 = off)")
    return c


def resolve(cfg: Any, platform: str | None = None, strict: bool = True) -> ModelConfig:
  """`cfg` with its `auto` switches made concrete for `platform` (default: JAX's backend).

  Train and compile with `strict` (an unavailable back-end is an error); inference of a model
  trained elsewhere without it (an unavailable back-end falls back to the reference)."""
  c = ModelConfig.from_any(cfg)
  platform = platform or jax.default_backend()
  layout = c.layout_vjps if c.layout_vjps != "auto" else ("on" if platform == "cpu" else "off")
  return dataclasses.replace(c, attention=attention_lib.resolve(c.attention, platform, strict),
                             layout_vjps=layout)


def num_params(cfg: Any) -> int:
  """Exact parameter count of `Transformer(cfg)`."""
  c = ModelConfig.from_any(cfg)
  D, H, F = c.d_model, c.head_dim, c.mlp_dim
  attn = D * c.num_heads * H * 2 + D * c.num_kv_heads * H * 2
  mlp = (3 if c.mlp_act == "swiglu" else 2) * D * F
  block = attn + mlp + 2 * D + (2 * H if c.qk_norm else 0)
  head = 0 if c.tie_embeddings else D * c.vocab_size
  return c.vocab_size * D + c.num_layers * block + D + head


class RMSNorm(nnx.Module):
  """`x * rsqrt(mean(x^2) + eps) * scale`, computed in float32, returned in x's dtype."""

  def __init__(self, dim: int, eps: float):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.eps = eps

  def __call__(self, x_BTD):
    x = x_BTD.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...]).astype(x_BTD.dtype)


def segment_positions(segment_ids_BT, B: int, T: int):
  """Positions 0..T-1, restarting at 0 wherever the segment id changes (packed rows)."""
  idx_BT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
  if segment_ids_BT is None:
    return idx_BT
  starts_BT = jnp.concatenate([jnp.ones((B, 1), jnp.bool_),
                               segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]], axis=1)
  return idx_BT - jax.lax.cummax(jnp.where(starts_BT, idx_BT, 0), axis=1)


def rope_inv_freq(c: "ModelConfig") -> np.ndarray:
  """[H/2] float32 inverse frequencies, as transformers computes them (its llama3 rule: long
  wavelengths divided by rope_factor, short ones kept, the band between blended linearly)."""
  inv = 1.0 / (c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float32) / c.head_dim))
  inv = inv.astype(np.float32)
  if c.rope_type == "default":
    return inv
  wavelen = 2 * math.pi / inv
  low_wavelen = c.rope_original_max_len / c.rope_low_freq_factor
  high_wavelen = c.rope_original_max_len / c.rope_high_freq_factor
  scaled = np.where(wavelen > low_wavelen, inv / c.rope_factor, inv)
  smooth = ((c.rope_original_max_len / wavelen - c.rope_low_freq_factor)
            / (c.rope_high_freq_factor - c.rope_low_freq_factor))
  blended = (1 - smooth) * scaled / c.rope_factor + smooth * scaled
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(medium, blended, scaled).astype(np.float32)


def rope_tables(positions_BT, c: "ModelConfig"):
  """cos, sin of shape [B, T, 1, H] (HF layout: the half-frequencies repeated twice)."""
  freqs_BTh = positions_BT.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(c))
  emb_BTH = jnp.concatenate([freqs_BTh, freqs_BTh], axis=-1)[:, :, None, :]
  return jnp.cos(emb_BTH), jnp.sin(emb_BTH)


def apply_rope(x_BTNH, cos_BT1H, sin_BT1H):
  """`x * cos + rotate_half(x) * sin` with rotate_half(x) = [-x2, x1]."""
  h = x_BTNH.shape[-1] // 2
  rot = jnp.concatenate([-x_BTNH[..., h:], x_BTNH[..., :h]], axis=-1)
  cos, sin = cos_BT1H.astype(x_BTNH.dtype), sin_BT1H.astype(x_BTNH.dtype)
  return x_BTNH * cos + rot * sin


# XLA:CPU lays a weight-gradient dot `x^T @ dy` out by copying (transposing) an activation,
# often the wider one with the SwiGLU backward fused into the copy. These custom VJPs transpose
# the narrower operand explicitly (see docs/RESEARCH.md, Model); the math is unchanged.
# `config.model.layout_vjps` turns them on (default: on CPU only; off = JAX's own gradients).


def _keep_layout(w):
  """Materializes `w` (a dot's result, or a transposed operand) so XLA:CPU cannot fold a transpose
  into the dot as a contraction over dim 0 of both operands, which ran up to 2x slower (13.1 vs
  6.7 ms for the debug head's embedding gradient; docs/RESEARCH.md)."""
  return jax.lax.optimization_barrier(w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x_MI, w_IO, out_dtype=None):
  return jnp.dot(x_MI, w_IO, preferred_element_type=out_dtype)


def _matmul_fwd(x_MI, w_IO, out_dtype):
  return _matmul(x_MI, w_IO, out_dtype), (x_MI, w_IO)


def _matmul_bwd(out_dtype, res, dy_MO):
  x_MI, w_IO = res
  dy_MO = dy_MO.astype(x_MI.dtype)
  dx_MI = jnp.dot(dy_MO, w_IO.T)
  if x_MI.shape[1] <= dy_MO.shape[1]:
    dw_IO = jnp.dot(x_MI.T, dy_MO)
  else:
    dw_IO = _keep_layout(jnp.dot(dy_MO.T, x_MI)).T
  return dx_MI, dw_IO.astype(w_IO.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


@jax.custom_vjp
def _tied_logits(h_MD, emb_VD):
  return jnp.dot(h_MD, emb_VD.T, preferred_element_type=jnp.float32)


def _tied_logits_fwd(h_MD, emb_VD):
  return _tied_logits(h_MD, emb_VD), (h_MD, emb_VD)


def _tied_logits_bwd(res, dlogits_MV):
  h_MD, emb_VD = res
  dlogits_MV = dlogits_MV.astype(h_MD.dtype)
  dh_MD = jnp.dot(dlogits_MV, emb_VD)
  # h^T materialised too: a plain [D, M] @ [M, V] dot instead of one contracting dim 0 of both
  # (debug head: 4.3 vs 4.9 ms, bench/matmul.py "head dw"; docs/RESEARCH.md "GEMMs")
  demb_VD = _keep_layout(jnp.dot(_keep_layout(h_MD.T), dlogits_MV)).T
  return dh_MD, demb_VD.astype(emb_VD.dtype)


_tied_logits.defvjp(_tied_logits_fwd, _tied_logits_bwd)


def _layout_dot_general(x, w, dimension_numbers, precision=None, preferred_element_type=None,
                        out_sharding=None):
  """`lax.dot_general` that routes plain `x[..., I] @ w[I, O]` through `_matmul`."""
  (lc, rc), (lb, rb) = dimension_numbers
  if (lb or rb or tuple(rc) != (0,) or tuple(lc) != (x.ndim - 1,)
      or w.ndim != 2 or precision is not None or out_sharding is not None or x.dtype != w.dtype):
    return jax.lax.dot_general(x, w, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type,
                               out_sharding=out_sharding)
  y_MO = _matmul(x.reshape(-1, x.shape[-1]), w, preferred_element_type)
  return y_MO.reshape(*x.shape[:-1], w.shape[1])


def _dot_general(c: ModelConfig):
  return _layout_dot_general if c.layout_vjps == "on" else jax.lax.dot_general


def _linear(d_in, d_out, std, c: ModelConfig, dtype, rngs):
  init = nnx.initializers.zeros if std == 0 else nnx.initializers.normal(std)
  return nnx.Linear(d_in, d_out, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=init, dot_general=_dot_general(c), rngs=rngs)


def _out_std(c: ModelConfig) -> float:
  """Init std of the residual-output projections (o_proj, down_proj): 0 with zero_init_out."""
  return 0.0 if c.zero_init_out else c.init_std / math.sqrt(2 * c.num_layers)


class Attention(nnx.Module):
  """Grouped-query attention with RoPE; kv head j serves query heads j*G .. (j+1)*G-1."""

  def __init__(self, c: ModelConfig, dtype, rngs: nnx.Rngs):
    D, N, K, H = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
    self.q_proj = _linear(D, N * H, c.init_std, c, dtype, rngs)
    self.k_proj = _linear(D, K * H, c.init_std, c, dtype, rngs)
    self.v_proj = _linear(D, K * H, c.init_std, c, dtype, rngs)
    self.o_proj = _linear(N * H, D, _out_std(c), c, dtype, rngs)
    if c.qk_norm:
      self.q_norm = RMSNorm(H, c.norm_eps)
      self.k_norm = RMSNorm(H, c.norm_eps)
    self.qk_norm = c.qk_norm
    self.num_heads, self.num_kv_heads, self.head_dim = N, K, H
    self.implementation, self.causal_chunks = c.attention, c.causal_chunks

  def qkv(self, x_BTD, cos, sin):
    B, T, _ = x_BTD.shape
    q_BTNH = self.q_proj(x_BTD).reshape(B, T, self.num_heads, self.head_dim)
    k_BTKH = self.k_proj(x_BTD).reshape(B, T, self.num_kv_heads, self.head_dim)
    v_BTKH = self.v_proj(x_BTD).reshape(B, T, self.num_kv_heads, self.head_dim)
    if self.qk_norm:
      q_BTNH, k_BTKH = self.q_norm(q_BTNH), self.k_norm(k_BTKH)
    return apply_rope(q_BTNH, cos, sin), apply_rope(k_BTKH, cos, sin), v_BTKH

  def __call__(self, x_BTD, cos, sin, segment_ids_BT):
    B, T, _ = x_BTD.shape
    q_BTNH, k_BTKH, v_BTKH = self.qkv(x_BTD, cos, sin)
    out_BTNH = attention_lib.attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT,
                                       implementation=self.implementation,
                                       causal_chunks=self.causal_chunks)
    return self.o_proj(out_BTNH.reshape(B, T, -1))

  def decode(self, x_BTD, cos, sin, layer_cache, index, valid_BS=None):
    """Writes this step's k/v at slots [index, index + T) and attends over slots <= own slot
    (and, with `valid_BS`, only over valid slots: not the left padding of a shorter prompt)."""
    B, T, _ = x_BTD.shape
    q_BTNH, k_BTKH, v_BTKH = self.qkv(x_BTD, cos, sin)
    k_BSKH = jax.lax.dynamic_update_slice(layer_cache["k"], k_BTKH.astype(layer_cache["k"].dtype),
                                          (0, index, 0, 0))
    v_BSKH = jax.lax.dynamic_update_slice(layer_cache["v"], v_BTKH.astype(layer_cache["v"].dtype),
                                          (0, index, 0, 0))
    S = k_BSKH.shape[1]
    mask_BTS = (jnp.arange(S)[None, :] <= index + jnp.arange(T)[:, None])[None]
    if valid_BS is not None:
      mask_BTS = valid_BS[:, None, :] & mask_BTS
    out_BTNH = attention_lib.reference_attention(q_BTNH, k_BSKH.astype(q_BTNH.dtype),
                                                 v_BSKH.astype(q_BTNH.dtype), mask_BTS)
    return self.o_proj(out_BTNH.reshape(B, T, -1)), {"k": k_BSKH, "v": v_BSKH}


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x)); or relu2: down(relu(up(x))^2) (So et al. 2021)."""

  def __init__(self, c: ModelConfig, dtype, rngs: nnx.Rngs):
    if c.mlp_act == "swiglu":
      self.gate_proj = _linear(c.d_model, c.mlp_dim, c.init_std, c, dtype, rngs)
    self.up_proj = _linear(c.d_model, c.mlp_dim, c.init_std, c, dtype, rngs)
    self.down_proj = _linear(c.mlp_dim, c.d_model, _out_std(c), c, dtype, rngs)
    self.act = c.mlp_act

  def __call__(self, x_BTD):
    if self.act == "relu2":
      return self.down_proj(jnp.square(jax.nn.relu(self.up_proj(x_BTD))))
    return self.down_proj(jax.nn.silu(self.gate_proj(x_BTD)) * self.up_proj(x_BTD))


class Block(nnx.Module):
  """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, c: ModelConfig, dtype, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(c.d_model, c.norm_eps)
    self.attn = Attention(c, dtype, rngs)
    self.mlp_norm = RMSNorm(c.d_model, c.norm_eps)
    self.mlp = MLP(c, dtype, rngs)

  def __call__(self, x_BTD, cos, sin, segment_ids_BT):
    x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD), cos, sin, segment_ids_BT)
    return x_BTD + self.mlp(self.mlp_norm(x_BTD))

  def decode(self, x_BTD, cos, sin, layer_cache, index, valid_BS=None):
    a_BTD, layer_cache = self.attn.decode(self.attn_norm(x_BTD), cos, sin, layer_cache, index,
                                          valid_BS)
    x_BTD = x_BTD + a_BTD
    return x_BTD + self.mlp(self.mlp_norm(x_BTD)), layer_cache


def _block_forward(block, x_BTD, cos, sin, segment_ids_BT):
  return block(x_BTD, cos, sin, segment_ids_BT)


def _remat_forward(policy):
  """`_block_forward` rematerialised by `jax.checkpoint` over the block's state, a pure function:
  nnx.remat failed inside gradient accumulation's lax.scan ("Cannot mutate Param from a
  different trace level") since it updates the block's Variables from its own trace."""
  def forward(block, x_BTD, cos, sin, segment_ids_BT):
    graphdef, state = nnx.split(block)

    def pure(state, x_BTD, cos, sin, segment_ids_BT):
      return nnx.merge(graphdef, state)(x_BTD, cos, sin, segment_ids_BT)
    return jax.checkpoint(pure, policy=policy)(state, x_BTD, cos, sin, segment_ids_BT)
  return forward


class Transformer(nnx.Module):
  """The decoder: embed -> L pre-norm blocks -> final norm -> lm_head (or tied embedding)."""

  def __init__(self, cfg: Any, *, rngs: nnx.Rngs):
    c = ModelConfig.from_any(cfg)
    if "auto" in (c.attention, c.layout_vjps):  # not resolved by the caller: this backend's
      c = resolve(c, strict=False)
    self.config = c
    dtype = self.dtype = DTYPES[c.dtype]
    self.embed = nnx.Embed(c.vocab_size, c.d_model, dtype=dtype, param_dtype=jnp.float32,
                           embedding_init=nnx.initializers.normal(c.init_std), rngs=rngs)
    self.layers = nnx.List([Block(c, dtype, rngs) for _ in range(c.num_layers)])
    self.final_norm = RMSNorm(c.d_model, c.norm_eps)
    if not c.tie_embeddings:
      self.lm_head = nnx.Linear(c.d_model, c.vocab_size, use_bias=False, dtype=dtype,
                                param_dtype=jnp.float32, preferred_element_type=jnp.float32,
                                kernel_init=nnx.initializers.normal(c.init_std),
                                dot_general=_dot_general(c), rngs=rngs)

  def _logits(self, h_BTD):
    logits_BTV = self._raw_logits(self.final_norm(h_BTD))
    cap = self.config.logit_softcap
    return cap * jnp.tanh(logits_BTV / cap) if cap else logits_BTV

  def _raw_logits(self, h_BTD):
    if self.config.tie_embeddings:
      emb_VD = self.embed.embedding[...].astype(self.dtype)
      B, T, D = h_BTD.shape
      if self.config.layout_vjps == "on":
        return _tied_logits(h_BTD.reshape(B * T, D), emb_VD).reshape(B, T, -1)
      return jnp.einsum("btd,vd->btv", h_BTD, emb_VD, preferred_element_type=jnp.float32)
    return self.lm_head(h_BTD).astype(jnp.float32)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    return self._logits(self._trunk(tokens_BT, segment_ids_BT, positions_BT))

  def _trunk(self, tokens_BT, segment_ids_BT, positions_BT):
    B, T = tokens_BT.shape
    if positions_BT is None:
      positions_BT = segment_positions(segment_ids_BT, B, T)
    cos, sin = rope_tables(positions_BT, self.config)
    x_BTD = self.embed(tokens_BT)
    forward = _block_forward
    if self.config.remat != "none":
      forward = _remat_forward(REMAT_POLICIES[self.config.remat])
    for block in self.layers:
      x_BTD = forward(block, x_BTD, cos, sin, segment_ids_BT)
    return x_BTD

  def fused_nll_sums(self, tokens_BT, targets_BT, mask_BT, segment_ids_BT=None,
                     positions_BT=None, z_loss: float = 0.0):
    """(sum of -log p(target), sum of log Z^2) over masked targets with the head and the loss
    fused over `loss_chunks` slices of the sequence (`fused_head_loss`): neither pass holds the
    [B, T, V] logits. Needs loss_chunks > 0 dividing T (`fuses_loss`)."""
    h_BTD = self.final_norm(self._trunk(tokens_BT, segment_ids_BT, positions_BT))
    c = self.config
    w = self.embed.embedding[...] if c.tie_embeddings else self.lm_head.kernel[...]
    return fused_head_loss(h_BTD, w.astype(self.dtype), targets_BT, mask_BT, c.loss_chunks,
                           c.tie_embeddings, c.logit_softcap, bool(z_loss))

  def fuses_loss(self, T: int) -> bool:
    return bool(self.config.loss_chunks) and T % self.config.loss_chunks == 0

  def decode(self, tokens_BT, positions_BT, cache, valid_BS=None):
    """Runs T new tokens against the cache; returns (float32 logits_BTV, updated cache).

    `valid_BS` (bool, [B, cache length]) masks cache slots no row may attend to: the left
    padding that batches prompts of different lengths."""
    cos, sin = rope_tables(positions_BT, self.config)
    index = cache["index"]
    x_BTD = self.embed(tokens_BT)
    new_layers = []
    for block, layer_cache in zip(self.layers, cache["layers"]):
      x_BTD, layer_cache = block.decode(x_BTD, cos, sin, layer_cache, index, valid_BS)
      new_layers.append(layer_cache)
    cache = {"layers": new_layers, "index": index + tokens_BT.shape[1]}
    return self._logits(x_BTD), cache


def abstract(cfg: ModelConfig):
  """(graphdef, parameter shapes) of the model `cfg` describes, without allocating it: what the
  engine shards and checkpoints restore into."""
  return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)


def init_cache(cfg: Any, batch: int, max_len: int, dtype=None) -> dict:
  """Empty KV cache: {'layers': [{'k','v': [B, max_len, K, H]}] * L, 'index': int32 scalar}."""
  c = ModelConfig.from_any(cfg)
  dtype = DTYPES[c.dtype] if dtype is None else jnp.dtype(dtype)
  shape = (batch, max_len, c.num_kv_heads, c.head_dim)
  layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
            for _ in range(c.num_layers)]
  return {"layers": layers, "index": jnp.zeros((), jnp.int32)}


# --- fused head + cross-entropy -----------------------------------------------------------------
# The logits of a [B, T] batch are the largest tensor of a small-model step ([B, T, V] float32,
# twice: forward and its gradient). `fused_head_loss` walks the sequence in C slices; for each it
# forms that slice's logits, their softmax and the gradient of the loss with respect to them,
# and folds that into dh (the slice's rows) and dW at once, so the backward pass only scales what
# the forward left. Same math, same FLOPs as head + loss + their autodiff.


def _slice_sums(h_BcD, w, tgt_Bc, m_Bc, tied, cap):
  """Logits of one slice -> (nll sum, logZ^2 sum, d nll/d logits, d logZ^2/d logits), the
  gradients already taken back through the soft-cap (with respect to the raw dot product)."""
  if tied:
    z_BcV = jnp.einsum("bcd,vd->bcv", h_BcD, w, preferred_element_type=jnp.float32)
  else:
    z_BcV = jnp.einsum("bcd,dv->bcv", h_BcD, w, preferred_element_type=jnp.float32)
  if cap:
    t_BcV = jnp.tanh(z_BcV / cap)
    z_BcV = cap * t_BcV
  logz_Bc = jax.nn.logsumexp(z_BcV, axis=-1)
  p_BcV = jnp.exp(z_BcV - logz_Bc[..., None])
  onehot_BcV = jax.nn.one_hot(tgt_Bc, z_BcV.shape[-1], dtype=jnp.float32)
  tgt_z = jnp.sum(z_BcV * onehot_BcV, axis=-1)
  m = m_Bc.astype(jnp.float32)
  nll, zsq = jnp.sum((logz_Bc - tgt_z) * m), jnp.sum(logz_Bc**2 * m)
  d_nll = (p_BcV - onehot_BcV) * m[..., None]
  d_zsq = p_BcV * (2 * logz_Bc * m)[..., None]
  if cap:
    d_nll, d_zsq = d_nll * (1 - t_BcV**2), d_zsq * (1 - t_BcV**2)
  return nll, zsq, d_nll, d_zsq


def _slices(x_BT, C):
  """[B, T, ...] -> [C, B, T/C, ...]: the scan runs over sequence slices, rows stay sharded."""
  B, T = x_BT.shape[:2]
  return jnp.moveaxis(x_BT.reshape(B, C, T // C, *x_BT.shape[2:]), 1, 0)


def _fused_fwd_bwd(h_BTD, w, targets_BT, mask_BT, C, tied, cap, with_zsq):
  """(nll, zsq) and their gradients with respect to h and w ([2, ...]: nll's, then zsq's, the
  latter only `with_zsq`), slice by slice."""
  k = 2 if with_zsq else 1

  def body(carry, xs):
    nll, zsq, dw_2 = carry
    h, tgt, m = xs
    n_, z_, d_nll, d_zsq = _slice_sums(h, w, tgt, m, tied, cap)
    g_2BcV = jnp.stack([d_nll, d_zsq][:k]).astype(h.dtype)
    if tied:
      dh_2 = jnp.einsum("kbcv,vd->kbcd", g_2BcV, w)
      dw_2 = dw_2 + jnp.einsum("kbcv,bcd->kvd", g_2BcV, h, preferred_element_type=jnp.float32)
    else:
      dh_2 = jnp.einsum("kbcv,dv->kbcd", g_2BcV, w)
      dw_2 = dw_2 + jnp.einsum("bcd,kbcv->kdv", h, g_2BcV, preferred_element_type=jnp.float32)
    return (nll + n_, zsq + z_, dw_2), dh_2

  zero = (jnp.float32(0), jnp.float32(0), jnp.zeros((k, *w.shape), jnp.float32))
  (nll, zsq, dw_2), dh_C2 = jax.lax.scan(
      body, zero, (_slices(h_BTD, C), _slices(targets_BT, C), _slices(mask_BT, C)))
  B, T, D = h_BTD.shape
  dh_2BTD = jnp.moveaxis(dh_C2, 0, 2).reshape(k, B, T, D)
  return nll, zsq, dh_2BTD, dw_2


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def fused_head_loss(h_BTD, w, targets_BT, mask_BT, C, tied, cap, with_zsq):
  """(sum of -log p(target), sum of log Z^2) over masked targets of the logits h @ w (w: the
  tied [V, D] embedding or the [D, V] head; soft-capped when cap > 0), in C sequence slices.
  Without `with_zsq` the second output carries no gradient (the objective does not use it)."""
  def body(carry, xs):
    h, tgt, m = xs
    n_, z_, _, _ = _slice_sums(h, w, tgt, m, tied, cap)
    return (carry[0] + n_, carry[1] + z_), None

  (nll, zsq), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)),
                               (_slices(h_BTD, C), _slices(targets_BT, C),
                                _slices(mask_BT, C)))
  return nll, zsq


def _fused_fwd(h_BTD, w, targets_BT, mask_BT, C, tied, cap, with_zsq):
  nll, zsq, dh_2, dw_2 = _fused_fwd_bwd(h_BTD, w, targets_BT, mask_BT, C, tied, cap, with_zsq)
  return (nll, zsq), (dh_2, dw_2, targets_BT, mask_BT)


def _fused_bwd(C, tied, cap, with_zsq, res, g):
  dh_2, dw_2, targets_BT, mask_BT = res
  g_2 = jnp.stack(g[:dh_2.shape[0]]).astype(jnp.float32)
  dh = jnp.einsum("k,k...->...", g_2, dh_2.astype(jnp.float32)).astype(dh_2.dtype)
  dw = jnp.einsum("k,k...->...", g_2, dw_2).astype(dh_2.dtype)  # w is in h's compute dtype
  return (dh, dw, np.zeros(targets_BT.shape, jax.dtypes.float0),
          np.zeros(mask_BT.shape, jax.dtypes.float0))


fused_head_loss.defvjp(_fused_fwd, _fused_bwd)
