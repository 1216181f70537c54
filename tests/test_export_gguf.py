"""GGUF export read back with gguf.GGUFReader: metadata, vocabulary, shapes and weights."""

import json

import numpy as np
import pytest

from swahili100 import special_tokens
from swahili100.export import gguf_export, hf
from tests.test_export_hf import export_config, random_model

gguf = pytest.importorskip("gguf")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def hf_dir(tiny_records, tmp_path_factory):
  config = export_config(tiny_records, **{"model.tie_embeddings": False,
                                          "model.num_kv_heads": 2})
  out = str(tmp_path_factory.mktemp("gguf") / "hf")
  return hf.export_hf(config, random_model(config), config.data.tokenizer, out), config


def _field(reader, key):
  return reader.fields[key].contents()


def test_gguf_f32_metadata_vocab_and_weights(hf_dir, tmp_path):
  folder, config = hf_dir
  m = config.model
  path = gguf_export.export_gguf(folder, str(tmp_path / "m.gguf"), "f32")
  r = gguf.GGUFReader(path)
  expect = {"general.architecture": "llama", "llama.context_length": config.data.seq_len,
            "llama.embedding_length": m.d_model, "llama.block_count": m.num_layers,
            "llama.feed_forward_length": m.mlp_dim, "llama.attention.head_count": m.num_heads,
            "llama.attention.head_count_kv": m.num_kv_heads, "llama.vocab_size": m.vocab_size,
            "llama.rope.dimension_count": m.head_dim, "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "gpt-2",
            "tokenizer.ggml.bos_token_id": special_tokens.BOS_ID,
            "tokenizer.ggml.eos_token_id": special_tokens.EOS_ID,
            "tokenizer.ggml.eot_token_id": special_tokens.END_ID,
            "tokenizer.ggml.padding_token_id": special_tokens.PAD_ID}
  assert {k: _field(r, k) for k in expect} == expect
  assert _field(r, "llama.rope.freq_base") == pytest.approx(m.rope_theta)
  assert _field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(m.norm_eps)

  tok = json.load(open(f"{folder}/tokenizer.json", encoding="utf-8"))
  vocab = {**tok["model"]["vocab"], **{t["content"]: t["id"] for t in tok["added_tokens"]}}
  tokens = _field(r, "tokenizer.ggml.tokens")
  assert len(tokens) == m.vocab_size
  assert all(tokens[i] == t for t, i in vocab.items())
  types = _field(r, "tokenizer.ggml.token_type")
  assert [types[i] for i in special_tokens.IDS.values()] == [gguf.TokenType.CONTROL] * 7
  assert types[len(special_tokens.ALL)] == gguf.TokenType.NORMAL
  assert _field(r, "tokenizer.ggml.merges") == [" ".join(x) if isinstance(x, list) else x
                                                for x in tok["model"]["merges"]]

  sd = safetensors_numpy.load_file(f"{folder}/model.safetensors")
  tensors = {t.name: t for t in r.tensors}
  assert len(tensors) == 2 + 9 * m.num_layers + 1  # embed, output_norm, output + 9 per block
  q = gguf_export.permute_rope(sd["model.layers.1.self_attn.q_proj.weight"], m.num_heads)
  k = gguf_export.permute_rope(sd["model.layers.1.self_attn.k_proj.weight"], m.num_kv_heads)
  pairs = {"token_embd.weight": sd["model.embed_tokens.weight"], "output.weight":
           sd["lm_head.weight"], "blk.1.attn_q.weight": q, "blk.1.attn_k.weight": k,
           "blk.1.ffn_down.weight": sd["model.layers.1.mlp.down_proj.weight"],
           "blk.0.attn_norm.weight": sd["model.layers.0.input_layernorm.weight"]}
  for name, want in pairs.items():
    t = tensors[name]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(t.shape[::-1]) == list(want.shape)  # GGUF lists dims fastest-first
    np.testing.assert_array_equal(np.asarray(t.data).reshape(want.shape), want)
  assert not np.array_equal(q, sd["model.layers.1.self_attn.q_proj.weight"])


def test_qk_norm_writes_qwen3_with_norms_and_unpermuted_rows(tiny_records, tmp_path):
  """model.qk_norm -> GGUF `qwen3`: per-head q/k norm scales as attn_q_norm/attn_k_norm, and q/k
  rows in the HF rotate-halves order (llama.cpp's qwen3 RoPE is NEOX, i.e. rotate halves)."""
  config = export_config(tiny_records, **{"model.qk_norm": True, "model.tie_embeddings": False,
                                          "model.zero_init_out": True})
  folder = hf.export_hf(config, random_model(config, seed=3), config.data.tokenizer,
                        str(tmp_path / "hf"))
  path = gguf_export.export_gguf(folder, str(tmp_path / "m.gguf"), "f32")
  r = gguf.GGUFReader(path)
  m = config.model
  assert _field(r, "general.architecture") == "qwen3"
  assert _field(r, "qwen3.attention.key_length") == m.head_dim
  assert _field(r, "qwen3.attention.head_count_kv") == m.num_kv_heads
  sd = safetensors_numpy.load_file(f"{folder}/model.safetensors")
  tensors = {t.name: t for t in r.tensors}
  assert len(tensors) == 3 + 11 * m.num_layers  # llama's 9 per block + the two q/k norms
  for i in range(m.num_layers):
    for ours, theirs in (("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
                         ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k")):
      want = sd[f"model.layers.{i}.{ours}.weight"]
      got = np.asarray(tensors[f"blk.{i}.{theirs}.weight"].data).reshape(want.shape)
      np.testing.assert_array_equal(got, want)
  assert tensors["blk.0.attn_q_norm.weight"].shape.tolist() == [m.head_dim]
  with pytest.raises(ValueError, match="MistralForCausalLM"):
    gguf_export.architecture({"architectures": ["MistralForCausalLM"]})


@pytest.mark.parametrize("gguf_type,tol", [("q8_0", 0.01), ("q4_0", 0.15)])
def test_gguf_quantized_tensors_dequantize_close(hf_dir, tmp_path, gguf_type, tol):
  folder, _ = hf_dir
  path = gguf_export.export_gguf(folder, str(tmp_path / "m.gguf"), gguf_type)
  r = gguf.GGUFReader(path)
  sd = safetensors_numpy.load_file(f"{folder}/model.safetensors")
  t = {t.name: t for t in r.tensors}["blk.0.ffn_up.weight"]
  assert t.tensor_type == gguf.GGMLQuantizationType[gguf_type.upper()]
  want = sd["model.layers.0.mlp.up_proj.weight"]
  got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
  rel = np.abs(got - want).max() / np.abs(want).max()
  assert 0 < rel < tol
  assert {t.name: t for t in r.tensors}["output_norm.weight"].tensor_type == 0  # norms stay F32


def _rope(x_TH, pos_T, theta, interleaved):
  """RoPE on one head: HF rotate-halves, or llama.cpp's adjacent pairs (interleaved)."""
  H = x_TH.shape[-1]
  inv = 1.0 / theta ** (np.arange(0, H, 2) / H)
  ang = pos_T[:, None] * inv[None]
  cos, sin = np.cos(ang), np.sin(ang)
  a, b = (x_TH[:, 0::2], x_TH[:, 1::2]) if interleaved else (x_TH[:, :H // 2], x_TH[:, H // 2:])
  ra, rb = a * cos - b * sin, a * sin + b * cos
  if interleaved:
    return np.stack([ra, rb], -1).reshape(x_TH.shape)
  return np.concatenate([ra, rb], -1)


def test_permute_makes_llamacpp_rope_equal_hf_rope():
  """q.k scores with the permuted rows under pair-RoPE equal HF's under rotate-halves RoPE."""
  rng = np.random.RandomState(0)
  n_head, H, D, T = 2, 8, 16, 5
  wq, wk, x = rng.randn(n_head * H, D), rng.randn(n_head * H, D), rng.randn(T, D)
  pos = np.arange(T, dtype=np.float64)
  for interleaved, (q_w, k_w) in ((False, (wq, wk)), (True, (
      gguf_export.permute_rope(wq, n_head), gguf_export.permute_rope(wk, n_head)))):
    q = (x @ q_w.T).reshape(T, n_head, H)
    k = (x @ k_w.T).reshape(T, n_head, H)
    scores = [_rope(q[:, h], pos, 1e4, interleaved) @ _rope(k[:, h], pos, 1e4, interleaved).T
              for h in range(n_head)]
    if not interleaved:
      want = scores
  np.testing.assert_allclose(scores, want, atol=1e-9)


def test_unsupported_pre_tokenizer_is_refused():
  with pytest.raises(ValueError, match="unsupported pre-tokenizer"):
    gguf_export.pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})
