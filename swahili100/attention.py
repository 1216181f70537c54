"""Causal, segment-aware grouped-query attention with selectable back-ends.

`attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, implementation=...)` is causal self-attention
over packed rows: token t of a row attends to token s when s <= t and both carry the same segment
id (padding, segment 0, only attends to padding, which keeps every softmax row finite).

Back-ends (`config.model.attention`):
  reference  plain einsum + boolean mask + float32 softmax; runs everywhere (CPU tests, export).
  cudnn      `jax.nn.dot_product_attention(implementation='cudnn')`, GPU only, bf16/fp16.
  splash     Pallas splash attention with segment ids, TPU only.
  auto       cudnn on GPU, splash on TPU, reference otherwise.

Grouped queries: query head n belongs to kv head n // G with G = N // K (Hugging Face
`repeat_kv`). The reference reshapes queries to [B, T, K, G, H] and contracts against the K kv
heads directly, so repeated keys/values are never materialized; the mask is an additive float32
bias; queries run in `causal_chunks` chunks (`config.model.causal_chunks`) so the upper triangle
of the score matrix is mostly skipped. Splash runs the Pallas kernel per example (vmap) and, under
`jax.set_mesh(mesh)`, per batch shard via shard_map (Pallas calls cannot be auto-partitioned);
T must suit its blocks (a multiple of 128). cuDNN gets the segment mask as a bias (no
packed-layout offsets yet).
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

from swahili100 import config_lib

IMPLEMENTATIONS = ("reference", "cudnn", "splash", "auto")
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


PLATFORM_BACKENDS = {"gpu": "cudnn", "cuda": "cudnn", "tpu": "splash"}


def resolve(implementation: str, platform: str, strict: bool = True) -> str:
  """The back-end for `platform` (the mesh devices' platform, e.g. 'tpu' for an ahead-of-time
  compile on a CPU host). `auto` picks the platform's fast one; an explicit one off its platform
  is an error when `strict`, else falls back to `reference` (inference of a model trained
  elsewhere)."""
  if implementation not in IMPLEMENTATIONS:
    raise config_lib.ConfigError(f"config.model.attention={implementation!r}: expected one "
                                 f"of {IMPLEMENTATIONS}")
  if implementation == "auto":
    return PLATFORM_BACKENDS.get(platform, "reference")
  if implementation != "reference" and PLATFORM_BACKENDS.get(platform) != implementation:
    if not strict:
      return "reference"
    needs = "a GPU" if implementation == "cudnn" else "a TPU"
    raise config_lib.ConfigError(
        f"config.model.attention={implementation!r} needs {needs}, but the mesh runs on "
        f"{platform!r}; set config.model.attention='reference' or 'auto'")
  return implementation


def causal_segment_mask(segment_ids_BT: jax.Array | None, T: int) -> jax.Array:
  """Boolean [B|1, T, T] mask: causal and same-segment."""
  causal_TT = jnp.tril(jnp.ones((T, T), jnp.bool_))
  if segment_ids_BT is None:
    return causal_TT[None]
  same_BTT = segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
  return same_BTT & causal_TT[None]


# Causal block skipping in the reference: queries in `causal_chunks` chunks, chunk i reading only
# keys [0, (i + 1) T / chunks): 5/8 of the full score matrix at 4 chunks (measured faster on CPU).
MIN_CHUNK = 32


def _causal_chunked(q_BTNH, k_BTKH, v_BTKH, mask_BTT, chunks):
  """Causal attention in query chunks; chunk i only reads keys [0, (i + 1) T / chunks)."""
  c = q_BTNH.shape[1] // chunks
  outs = [reference_attention(q_BTNH[:, i * c:(i + 1) * c], k_BTKH[:, :(i + 1) * c],
                              v_BTKH[:, :(i + 1) * c], mask_BTT[:, i * c:(i + 1) * c, :(i + 1) * c])
          for i in range(chunks)]
  return jnp.concatenate(outs, axis=1)


def _scaled(q_BTNH):
  return q_BTNH * jnp.asarray(q_BTNH.shape[-1] ** -0.5, q_BTNH.dtype)


def _bias(mask_BTS):
  # additive bias rather than a select: its backward is the identity (measured faster on CPU)
  return jnp.where(mask_BTS, 0.0, _MASK_VALUE).astype(jnp.float32)


def reference_attention(q_BTNH, k_BSKH, v_BSKH, mask_BTS):
  """Masked softmax attention; mask_BTS is boolean (True = attend), broadcastable over B."""
  B, T, N, H = q_BTNH.shape
  K = k_BSKH.shape[2]
  q_BTKGH = _scaled(q_BTNH).reshape(B, T, K, N // K, H)
  scores_BKGTS = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_BSKH,
                            preferred_element_type=jnp.float32)
  scores_BKGTS = scores_BKGTS + _bias(mask_BTS)[:, None, None]
  probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(v_BSKH.dtype)
  out_BTKGH = jnp.einsum("bkgts,bskh->btkgh", probs_BKGTS, v_BSKH)
  return out_BTKGH.reshape(B, T, N, H)


def _cudnn_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT):
  dtype = q_BTNH.dtype if q_BTNH.dtype in (jnp.bfloat16, jnp.float16) else jnp.bfloat16
  q, k, v = (x.astype(dtype) for x in (q_BTNH, k_BTKH, v_BTKH))
  if segment_ids_BT is None:
    out = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
  else:
    same_B1TT = (segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :])[:, None]
    out = jax.nn.dot_product_attention(q, k, v, mask=same_B1TT, is_causal=True,
                                       implementation="cudnn")
  return out.astype(q_BTNH.dtype)


def _splash_kernel(T: int, N: int, block: int, interpret: bool = False):
  # built per trace: the kernel holds arrays, so caching it across traces would leak tracers
  mask = sm.MultiHeadMask([sm.CausalMask((T, T)) for _ in range(N)])
  sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                        block_q_dq=block, block_kv_dq=block)
  return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes,
                            interpret=interpret)


def _splash_local(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, interpret):
  B, T, N, H = q_BTNH.shape
  K = k_BTKH.shape[2]
  kernel = _splash_kernel(T, N, min(512, T), interpret)
  # splash takes [heads, T, H] per example with queries pre-scaled; GQA by repeating kv heads
  # (the kernel's MQA path needs K == 1, so repeat in general).
  q_BNTH = jnp.swapaxes(q_BTNH * jnp.asarray(H ** -0.5, q_BTNH.dtype), 1, 2)
  k_BNTH = jnp.swapaxes(jnp.repeat(k_BTKH, N // K, axis=2), 1, 2)
  v_BNTH = jnp.swapaxes(jnp.repeat(v_BTKH, N // K, axis=2), 1, 2)
  seg = sk.SegmentIds(q=segment_ids_BT, kv=segment_ids_BT)
  out_BNTH = jax.vmap(kernel)(q_BNTH, k_BNTH, v_BNTH, segment_ids=seg)
  return jnp.swapaxes(out_BNTH, 1, 2)


def _splash_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, interpret=False):
  """Splash attention; under `jax.set_mesh(mesh)` it runs per batch shard via shard_map."""
  B, T = q_BTNH.shape[:2]
  if segment_ids_BT is None:
    segment_ids_BT = jnp.ones((B, T), jnp.int32)
  segment_ids_BT = segment_ids_BT.astype(jnp.int32)
  local = functools.partial(_splash_local, interpret=interpret)
  mesh = jax.sharding.get_abstract_mesh()
  batch_axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names and mesh.shape[a] > 1)
  if mesh.empty or not batch_axes:
    return local(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT)
  # pallas kernels cannot be auto-partitioned: split the batch explicitly (heads stay whole)
  P = jax.sharding.PartitionSpec
  x_spec, seg_spec = P(batch_axes, None, None, None), P(batch_axes, None)
  return jax.shard_map(local, mesh=mesh, in_specs=(x_spec, x_spec, x_spec, seg_spec),
                       out_specs=x_spec, check_vma=False)(
                           q_BTNH, k_BTKH, v_BTKH, segment_ids_BT)


def attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT=None, *, implementation="reference",
              causal_chunks: int = 1):
  """Causal (segment-aware) self-attention; returns [B, T, N, H] in q's dtype.

  `implementation` is a resolved back-end (see `resolve`): reference, cudnn or splash."""
  if implementation == "cudnn":
    return _cudnn_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT)
  if implementation == "splash":
    return _splash_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT)
  if implementation != "reference":
    raise ValueError(f"attention back-end {implementation!r} is not resolved; call resolve()")
  mask_BTT = causal_segment_mask(segment_ids_BT, q_BTNH.shape[1])
  T = q_BTNH.shape[1]
  if causal_chunks > 1 and T % causal_chunks == 0 and T // causal_chunks >= MIN_CHUNK:
    return _causal_chunked(q_BTNH, k_BTKH, v_BTKH, mask_BTT, causal_chunks)
  return reference_attention(q_BTNH, k_BTKH, v_BTKH, mask_BTT)
