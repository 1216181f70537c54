"""The Llama decoder: parameter tree, math against independent references, masking, KV cache."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.debug import get_config
from swahili100 import attention as attention_lib
from swahili100 import config_lib
from swahili100 import model as model_lib


def small_config(**overrides):
  c = get_config().model
  c.update(vocab_size=97, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
           mlp_dim=48, init_std=0.2)
  c.update(**overrides)
  return c


def make(seed=0, **overrides):
  return model_lib.Transformer(small_config(**overrides), rngs=nnx.Rngs(seed))


def tokens(B, T, seed=0, vocab=97):
  return jnp.asarray(np.random.RandomState(seed).randint(0, vocab, (B, T)), jnp.int32)


def jitted(m):
  """m's forward, jitted over its split state (as training calls it)."""
  graphdef, state = nnx.split(m)
  fn = jax.jit(lambda s, tok, seg, pos: nnx.merge(graphdef, s)(tok, seg, pos))
  return lambda tok, segment_ids_BT=None, positions_BT=None: fn(state, tok, segment_ids_BT,
                                                                  positions_BT)


def flat_params(m):
  return {".".join(map(str, k)): np.asarray(v[...], np.float64)
          for k, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}


# --- parameter tree ---------------------------------------------------------------------------

@pytest.mark.parametrize("tie", [True, False])
def test_param_tree_shapes_and_count(tie):
  c = small_config(tie_embeddings=tie, num_layers=3)
  m = model_lib.Transformer(c, rngs=nnx.Rngs(0))
  p = flat_params(m)
  D, H, K, hd, F, V = 32, 4, 2, 8, 48, 97
  expected = {"embed.embedding": (V, D), "final_norm.scale": (D,)}
  for i in range(3):
    expected.update({
        f"layers.{i}.attn_norm.scale": (D,), f"layers.{i}.mlp_norm.scale": (D,),
        f"layers.{i}.attn.q_proj.kernel": (D, H * hd),
        f"layers.{i}.attn.k_proj.kernel": (D, K * hd),
        f"layers.{i}.attn.v_proj.kernel": (D, K * hd),
        f"layers.{i}.attn.o_proj.kernel": (H * hd, D),
        f"layers.{i}.mlp.gate_proj.kernel": (D, F), f"layers.{i}.mlp.up_proj.kernel": (D, F),
        f"layers.{i}.mlp.down_proj.kernel": (F, D)})
  if not tie:
    expected["lm_head.kernel"] = (D, V)
  assert {k: v.shape for k, v in p.items()} == expected
  block = D * H * hd * 2 + D * K * hd * 2 + 3 * D * F + 2 * D
  formula = V * D + 3 * block + D + (0 if tie else D * V)
  assert model_lib.num_params(c) == formula == sum(v.size for v in p.values())
  state = nnx.state(m, nnx.Param)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state))
  # norms start at one; residual-output projections use the smaller std
  assert np.all(p["layers.0.attn_norm.scale"] == 1.0)
  assert p["layers.0.mlp.down_proj.kernel"].std() < 0.6 * p["layers.0.mlp.up_proj.kernel"].std()


def test_bad_config_errors_name_the_key():
  with pytest.raises(ValueError, match="num_kv_heads"):
    make(num_kv_heads=3)
  with pytest.raises(ValueError, match="config.model.dtype"):
    make(dtype="float16")


# --- math against independent references -------------------------------------------------------

def numpy_llama(p, c, tok, positions=None, segments=None):
  """Float64 Llama forward written from the HF definition (repeat_kv, rotate_half)."""
  B, T = tok.shape
  H, K, hd = c.num_heads, c.num_kv_heads, c.head_dim
  pos = np.broadcast_to(np.arange(T), (B, T)) if positions is None else np.asarray(positions)
  seg = np.ones((B, T)) if segments is None else np.asarray(segments)
  inv = 1.0 / c.rope_theta ** (np.arange(0, hd, 2) / hd)
  ang = pos[..., None] * inv
  cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

  def rope(x):  # x [B, T, n, hd]
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos[:, :, None] + rot * sin[:, :, None]

  def norm(x, w):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + c.norm_eps) * w

  mask = np.tril(np.ones((T, T), bool))[None] & (seg[:, :, None] == seg[:, None, :])
  x = p["embed.embedding"][np.asarray(tok)]
  for i in range(c.num_layers):
    pre = f"layers.{i}."
    h = norm(x, p[pre + "attn_norm.scale"])
    q = rope((h @ p[pre + "attn.q_proj.kernel"]).reshape(B, T, H, hd))
    k = rope((h @ p[pre + "attn.k_proj.kernel"]).reshape(B, T, K, hd))
    v = (h @ p[pre + "attn.v_proj.kernel"]).reshape(B, T, K, hd)
    k, v = np.repeat(k, H // K, axis=2), np.repeat(v, H // K, axis=2)
    s = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(hd)
    s = np.where(mask[:, None], s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("bnqk,bknh->bqnh", a, v).reshape(B, T, H * hd)
    x = x + o @ p[pre + "attn.o_proj.kernel"]
    h = norm(x, p[pre + "mlp_norm.scale"])
    g = h @ p[pre + "mlp.gate_proj.kernel"]
    u = h @ p[pre + "mlp.up_proj.kernel"]
    x = x + (g / (1 + np.exp(-g)) * u) @ p[pre + "mlp.down_proj.kernel"]
  x = norm(x, p["final_norm.scale"])
  return x @ (p["embed.embedding"].T if c.tie_embeddings else p["lm_head.kernel"])


@pytest.mark.parametrize("kv_heads,tie", [(4, True), (2, False), (1, True)])
def test_forward_matches_numpy_reference(kv_heads, tie):
  c = small_config(num_kv_heads=kv_heads, tie_embeddings=tie)
  m = model_lib.Transformer(c, rngs=nnx.Rngs(1))
  tok = tokens(2, 11)
  logits = m(tok)
  assert logits.shape == (2, 11, 97) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, numpy_llama(flat_params(m), c, tok), atol=2e-5, rtol=1e-4)


def test_mha_attention_equals_plain_multihead():
  """With K == N, the grouped einsum is ordinary multi-head attention."""
  rs = np.random.RandomState(0)
  q, k, v = (rs.randn(2, 7, 3, 4).astype(np.float32) for _ in range(3))
  out = attention_lib.attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
  expected = np.zeros_like(q)
  for b in range(2):
    for n in range(3):
      s = q[b, :, n] @ k[b, :, n].T / 2.0
      s[np.triu_indices(7, 1)] = -np.inf
      w = np.exp(s - s.max(1, keepdims=True))
      expected[b, :, n] = (w / w.sum(1, keepdims=True)) @ v[b, :, n]
  np.testing.assert_allclose(out, expected, atol=1e-5)


def _packed_qkv(T, seed=0):
  rs = np.random.RandomState(seed)
  q, k, v = (jnp.asarray(rs.randn(2, T, n, 16).astype(np.float32)) for n in (4, 2, 2))
  cut = T // 3
  seg = jnp.asarray([[1] * cut + [2] * (T - cut), [1] * T], jnp.int32)
  return q, k, v, seg


def test_causal_chunking_equals_one_block(monkeypatch):
  q, k, v, seg = _packed_qkv(16)
  monkeypatch.setattr(attention_lib, "MIN_CHUNK", 2)
  chunked = jax.jit(functools.partial(attention_lib.attention, causal_chunks=4))(q, k, v, seg)
  whole = jax.jit(functools.partial(attention_lib.attention, causal_chunks=1))(q, k, v, seg)
  np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_model_switches_are_config_fields():
  """layout VJPs and causal chunks come from config.model, resolved per platform."""
  c = model_lib.resolve(small_config(), "cpu")
  assert (c.layout_vjps, c.attention, c.causal_chunks) == ("on", "reference", 4)
  assert model_lib.resolve(small_config(), "tpu").layout_vjps == "off"
  assert model_lib.resolve(small_config(attention="auto"), "tpu").attention == "splash"
  assert model_lib.resolve(small_config(layout_vjps="off"), "cpu").layout_vjps == "off"
  m = make(layout_vjps="on")
  assert m.layers[0].mlp.up_proj.dot_general is model_lib._layout_dot_general
  assert make(layout_vjps="off").layers[0].mlp.up_proj.dot_general is jax.lax.dot_general
  with pytest.raises(config_lib.ConfigError, match="layout_vjps"):
    make(layout_vjps="maybe")


def test_splash_wrapper_matches_reference_in_interpret_mode():
  """The TPU splash path (GQA repeat, scaling, segment ids) run by the Pallas interpreter."""
  pytest.importorskip("jax.experimental.pallas.ops.tpu.splash_attention")
  q, k, v, seg = _packed_qkv(128, seed=1)
  ref_fn = lambda q: attention_lib.reference_attention(
      q, k, v, attention_lib.causal_segment_mask(seg, 128))
  splash_fn = lambda q: attention_lib._splash_attention(q, k, v, seg, interpret=True)
  np.testing.assert_allclose(splash_fn(q), ref_fn(q), atol=1e-5)
  g_ref = jax.grad(lambda q: jnp.sum(ref_fn(q) ** 2))(q)
  g_splash = jax.grad(lambda q: jnp.sum(splash_fn(q) ** 2))(q)
  np.testing.assert_allclose(g_splash, g_ref, atol=1e-4)


def test_matches_transformers_llama():
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  c = small_config(tie_embeddings=False, rope_theta=500.0)
  m = model_lib.Transformer(c, rngs=nnx.Rngs(2))
  p = flat_params(m)
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=c.norm_eps,
      rope_theta=500.0, tie_word_embeddings=False)).eval()
  sd = {"model.embed_tokens.weight": p["embed.embedding"],
        "model.norm.weight": p["final_norm.scale"], "lm_head.weight": p["lm_head.kernel"].T}
  for i in range(2):
    a, b = f"layers.{i}.", f"model.layers.{i}."
    sd[b + "input_layernorm.weight"] = p[a + "attn_norm.scale"]
    sd[b + "post_attention_layernorm.weight"] = p[a + "mlp_norm.scale"]
    for n in "qkvo":
      sd[b + f"self_attn.{n}_proj.weight"] = p[a + f"attn.{n}_proj.kernel"].T
    for n in ("gate", "up", "down"):
      sd[b + f"mlp.{n}_proj.weight"] = p[a + f"mlp.{n}_proj.kernel"].T
  hf.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()})
  tok = tokens(2, 13)
  with torch.no_grad():
    ref = hf(torch.tensor(np.asarray(tok))).logits.numpy()
  np.testing.assert_allclose(m(tok), ref, atol=2e-5, rtol=1e-4)


# --- packed rows -------------------------------------------------------------------------------

def test_packed_documents_are_isolated_and_positions_restart():
  m = jitted(make())
  doc1, doc2 = tokens(1, 5, seed=1)[0], tokens(1, 7, seed=2)[0]
  row = jnp.concatenate([doc1, doc2])[None]
  seg = jnp.asarray([[1] * 5 + [2] * 7], jnp.int32)
  pos = jnp.asarray([list(range(5)) + list(range(7))], jnp.int32)
  packed = m(row, segment_ids_BT=seg, positions_BT=pos)
  np.testing.assert_allclose(packed[0, :5], m(doc1[None])[0], atol=1e-5)
  np.testing.assert_allclose(packed[0, 5:], m(doc2[None])[0], atol=1e-5)
  # positions default to restarting per segment
  np.testing.assert_array_equal(model_lib.segment_positions(seg, 1, 12), pos)
  np.testing.assert_allclose(m(row, segment_ids_BT=seg), packed, atol=1e-6)
  # changing document 2 leaves document 1's logits exactly as they were, and changes doc 2's
  other = row.at[0, 5:].set((row[0, 5:] + 1) % 97)
  changed = m(other, segment_ids_BT=seg, positions_BT=pos)
  np.testing.assert_array_equal(changed[0, :5], packed[0, :5])
  assert np.abs(np.asarray(changed[0, 5:] - packed[0, 5:])).max() > 1e-3


def test_padding_segment_is_finite():
  m = make()
  seg = jnp.asarray([[1, 1, 1, 0, 0]], jnp.int32)
  pos = jnp.asarray([[0, 1, 2, 0, 0]], jnp.int32)
  out = m(tokens(1, 5), segment_ids_BT=seg, positions_BT=pos)
  assert np.isfinite(np.asarray(out)).all()


# --- jit over split state, gradients, remat, dtype ---------------------------------------------

def loss_and_grads(m, tok):
  graphdef, params = nnx.split(m, nnx.Param)

  @jax.jit
  def loss_fn(params, tok):
    logits = nnx.merge(graphdef, params)(tok[:, :-1])
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, tok[:, 1:, None], -1).mean()

  return jax.value_and_grad(loss_fn)(params, tok)


@pytest.mark.parametrize("tie", [True, False])
def test_custom_matmul_gradients_equal_autodiff(tie):
  tok = tokens(2, 9)
  loss, grads = loss_and_grads(make(tie_embeddings=tie, layout_vjps="on"), tok)
  loss_ref, grads_ref = loss_and_grads(make(tie_embeddings=tie, layout_vjps="off"), tok)
  np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(g, r, atol=1e-6, rtol=1e-4)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 1e-3


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_keeps_loss_and_gradients(remat):
  tok = tokens(2, 9)
  loss, grads = loss_and_grads(make(), tok)
  loss_r, grads_r = loss_and_grads(make(remat=remat), tok)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  for g, r in zip(jax.tree.leaves(grads_r), jax.tree.leaves(grads)):
    np.testing.assert_allclose(g, r, atol=1e-6, rtol=1e-4)


def test_bfloat16_compute_close_to_float32():
  tok = tokens(2, 16)
  f32 = jitted(make())(tok)
  m16 = make(dtype="bfloat16")
  out = jitted(m16)(tok)
  assert out.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m16, nnx.Param)))
  err = np.abs(np.asarray(out - f32)).max()
  assert 0 < err < 0.05 * np.abs(np.asarray(f32)).max()


def test_attention_backend_selection():
  assert attention_lib.resolve("auto", "cpu") == "reference"
  assert attention_lib.resolve("auto", "gpu") == "cudnn"
  assert attention_lib.resolve("auto", "tpu") == "splash"
  with pytest.raises(ValueError, match="needs a GPU"):
    attention_lib.resolve("cudnn", "cpu")
  with pytest.raises(ValueError, match="needs a TPU"):
    attention_lib.resolve("splash", "cpu")
  with pytest.raises(ValueError, match="needs a TPU"):
    model_lib.resolve(small_config(attention="splash"), "cpu")
  # inference of a TPU-trained model on CPU falls back to the reference
  assert model_lib.resolve(small_config(attention="splash"), "cpu", strict=False).attention == \
      "reference"
  np.testing.assert_array_equal(jitted(make(attention="auto"))(tokens(1, 6)),
                                jitted(make())(tokens(1, 6)))


# --- KV cache ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kv_cache_decode_equals_full_forward(dtype):
  m = make(dtype=dtype)
  tok = tokens(2, 12, seed=3)
  full = m(tok)
  pos = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (2, 12))
  cache = model_lib.init_cache(m.config, 2, 16)
  step = jax.jit(lambda t, p, c: m.decode(t, p, c))
  logits, cache = step(tok[:, :7], pos[:, :7], cache)
  outs = [logits]
  for t in range(7, 12):
    logits, cache = step(tok[:, t:t + 1], pos[:, t:t + 1], cache)
    outs.append(logits)
  assert int(cache["index"]) == 12
  tol = 1e-5 if dtype == "float32" else 0.05 * float(jnp.abs(full).max())
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=tol)
