"""Architecture switches (qk_norm, mlp_act, logit_softcap, zero_init_out, untied head): each
against a direct NumPy or PyTorch computation, their parameter counts, and honest export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swahili100 import flops
from swahili100 import model as model_lib
from swahili100.export import hf
from swahili100.export import main as export_main
from tests.test_model import flat_params, make, small_config, tokens


def _rms(x, scale, eps):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _perturb(m, seed=0):
  """Norm scales away from 1 and zero-initialised matrices filled, so every weight matters."""
  params = nnx.state(m, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  new = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  nnx.update(m, jax.tree.unflatten(treedef, new))
  return m


def test_relu2_mlp_matches_numpy():
  m = _perturb(make(mlp_act="relu2"))
  p = flat_params(m)
  assert "layers.0.mlp.gate_proj.kernel" not in p
  x_BTD = np.random.RandomState(0).randn(2, 5, 32).astype(np.float32)
  want = np.square(np.maximum(x_BTD @ p["layers.0.mlp.up_proj.kernel"], 0)) \
      @ p["layers.0.mlp.down_proj.kernel"]
  np.testing.assert_allclose(m.layers[0].mlp(jnp.asarray(x_BTD)), want, rtol=1e-4, atol=1e-4)


def test_logit_softcap_matches_numpy():
  capped = _perturb(make(logit_softcap=3.0))
  plain = make()
  nnx.update(plain, nnx.state(capped, nnx.Param))
  tok = tokens(2, 9)
  raw = np.asarray(plain(tok), np.float64)
  assert np.abs(raw).max() > 3.0  # the cap bites
  got = np.asarray(capped(tok))
  np.testing.assert_allclose(got, 3.0 * np.tanh(raw / 3.0), rtol=1e-5, atol=1e-5)
  assert np.abs(got).max() < 3.0


def test_qk_norm_attention_matches_numpy():
  m = _perturb(make(qk_norm=True, num_kv_heads=4))
  p = flat_params(m)
  a = "layers.0.attn."
  x_BTD = np.random.RandomState(1).randn(1, 6, 32)
  B, T, N, H = 1, 6, 4, 8
  q = _rms((x_BTD @ p[a + "q_proj.kernel"]).reshape(B, T, N, H), p[a + "q_norm.scale"], 1e-5)
  k = _rms((x_BTD @ p[a + "k_proj.kernel"]).reshape(B, T, N, H), p[a + "k_norm.scale"], 1e-5)
  v = (x_BTD @ p[a + "v_proj.kernel"]).reshape(B, T, N, H)
  inv = 1.0 / 10000.0 ** (np.arange(0, H, 2) / H)
  ang = np.arange(T)[:, None] * inv
  cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
  rot = lambda t: t * cos[None, :, None] + np.concatenate(
      [-t[..., H // 2:], t[..., :H // 2]], -1) * sin[None, :, None]
  q, k = rot(q), rot(k)
  s = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(H)
  s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
  w = np.exp(s - s.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  out = np.einsum("bnts,bsnh->btnh", w, v).reshape(B, T, N * H) @ p[a + "o_proj.kernel"]
  pos = jnp.arange(T)[None]
  cos_j, sin_j = model_lib.rope_tables(pos, m.config)
  got = m.layers[0].attn(jnp.asarray(x_BTD, jnp.float32), cos_j, sin_j, None)
  np.testing.assert_allclose(got, out, rtol=1e-4, atol=1e-4)


def test_zero_init_out_makes_blocks_identity():
  m = make(zero_init_out=True)
  p = flat_params(m)
  for i in range(2):
    assert not p[f"layers.{i}.attn.o_proj.kernel"].any()
    assert not p[f"layers.{i}.mlp.down_proj.kernel"].any()
    assert np.abs(p[f"layers.{i}.attn.q_proj.kernel"]).max() > 0
  tok = tokens(2, 7)
  h = _rms(p["embed.embedding"][np.asarray(tok)], p["final_norm.scale"], 1e-5)
  np.testing.assert_allclose(m(tok), h @ p["embed.embedding"].T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("switches", [{}, {"qk_norm": True}, {"mlp_act": "relu2"},
                                      {"tie_embeddings": False, "qk_norm": True,
                                       "mlp_act": "relu2", "logit_softcap": 15.0}])
def test_num_params_and_flops_count_the_switches(switches):
  c = small_config(**switches)
  m = model_lib.Transformer(c, rngs=nnx.Rngs(0))
  n = sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert model_lib.num_params(c) == n
  resolved = model_lib.ModelConfig.from_any(c)
  embed = 0 if resolved.tie_embeddings else 97 * 32
  assert flops.flops_per_token(resolved, 16) == 6 * (n - embed) + 12 * 2 * 4 * 8 * 16


def test_defaults_are_plain_llama():
  """All switches off by default: the parameter tree is Llama's (the golden test pins values)."""
  p = flat_params(make())
  assert not any("q_norm" in k or "k_norm" in k for k in p)
  assert "layers.1.mlp.gate_proj.kernel" in p and "lm_head.kernel" not in p


def test_export_refuses_by_name():
  c = model_lib.ModelConfig.from_any(small_config(qk_norm=True, mlp_act="relu2",
                                                  logit_softcap=30.0))
  for fmt in ("hf", "onnx", "gguf"):
    why = " ".join(hf.unsupported(c, fmt))
    assert "mlp_act" in why and "logit_softcap" in why and "qk_norm" not in why
  plain = model_lib.ModelConfig.from_any(small_config(zero_init_out=True, tie_embeddings=False))
  assert all(not hf.unsupported(plain, f) for f in export_main.FORMATS)
  with pytest.raises(ValueError, match="mlp_act"):
    hf.llama_config(model_lib.ModelConfig.from_any(small_config(mlp_act="relu2")))


@pytest.mark.parametrize("tie,cap,z_loss", [(True, 0.0, 0.0), (False, 0.0, 1e-4),
                                            (True, 5.0, 1e-3)])
def test_fused_head_loss_equals_logits_then_loss(tie, cap, z_loss):
  """model.loss_chunks > 0 gives the loss and every gradient of the plain path (logits, then
  log-softmax), tied or not, soft-capped or not, with the z-loss."""
  from swahili100 import lm
  rng = np.random.RandomState(0)
  B, T = 3, 16
  batch = {"inputs": jnp.asarray(rng.randint(0, 97, (B, T))),
           "targets": jnp.asarray(rng.randint(0, 97, (B, T))),
           "segment_ids": jnp.ones((B, T), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(T), (B, T)),
           "mask": jnp.asarray(rng.randint(0, 2, (B, T)))}
  out = {}
  for chunks in (0, 4):
    m = make(tie_embeddings=tie, logit_softcap=cap, loss_chunks=chunks)
    graphdef, params = nnx.split(m, nnx.Param)
    loss_fn = lambda p: lm.lm_loss(p, graphdef, None, batch, z_loss=z_loss)  # noqa: E731
    (total, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    out[chunks] = (float(total), float(sums["loss"]), flat_params_of(grads))
  assert out[4][0] == pytest.approx(out[0][0], rel=1e-6)
  assert out[4][1] == pytest.approx(out[0][1], rel=1e-6)
  for k, g in out[0][2].items():
    np.testing.assert_allclose(out[4][2][k], g, rtol=1e-4, atol=2e-5, err_msg=k)


def flat_params_of(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
