"""Hugging Face folder -> llama.cpp GGUF (gpt2-style BPE vocabulary).

    export_gguf(hf_dir, "model-f32.gguf", gguf_type="f32")   # f32 | f16 | q8_0 | q4_0

Weights come from the exported `model.safetensors`, so GGUF, ONNX and HF share one source.
The GGUF architecture follows the HF one: `LlamaForCausalLM` -> `llama`, `Qwen3ForCausalLM`
(model.qk_norm) -> `qwen3`, which adds the per-head `attn_q_norm`/`attn_k_norm` scales.
llama.cpp's llama architecture applies RoPE to interleaved pairs, so its q/k rows are permuted
from the HF rotate-halves layout (as llama.cpp's convert_hf_to_gguf.py does for LlamaModel);
qwen3 uses NEOX RoPE, the rotate-halves layout itself, so its rows are written as they are.
Norm vectors stay F32; 2-D weights whose rows do not divide into 32-wide blocks fall back to
F16 (q8_0/q4_0) or F32.
"""

import json
import os

import numpy as np
import tokenizers

from swahili100 import special_tokens

TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2}  # GGMLQuantizationType values
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}  # LlamaFileType values
# tokenizers' ByteLevel(use_regex=True) splits with GPT-2's regex; llama.cpp's pre-tokenizer
# "gpt-2" (LLAMA_VOCAB_PRE_TYPE_GPT2) uses the same regex. See docs/RESEARCH.md.
GPT2_PRE = "gpt-2"

HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# HF architecture -> (GGUF architecture, whether q/k rows need permute_rope, its per-layer
# tensors: HF name -> GGUF name)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True, HF_TO_GGUF),
    "Qwen3ForCausalLM": ("qwen3", False, HF_TO_GGUF | {"self_attn.q_norm": "attn_q_norm",
                                                      "self_attn.k_norm": "attn_k_norm"}),
}


def architecture(hf_cfg: dict, where: str = "config.json") -> tuple[str, bool, dict]:
  """(GGUF architecture, permute q/k?, per-layer tensor names) for an HF config.json; a clear
  error for others."""
  names = hf_cfg.get("architectures") or ["LlamaForCausalLM"]
  if names[0] not in ARCHITECTURES:
    raise ValueError(f"gguf export: {where}: architecture {names[0]!r} has no GGUF mapping; "
                     f"expected one of {sorted(ARCHITECTURES)} (write the folder with "
                     "`swahili100 export --format hf`)")
  return ARCHITECTURES[names[0]]


def permute_rope(w_OI: np.ndarray, n_head: int) -> np.ndarray:
  """HF rotate-halves rows -> llama.cpp interleaved-pair rows, per head."""
  out, rest = w_OI.shape[0], w_OI.shape[1:]
  return (w_OI.reshape(n_head, 2, out // n_head // 2, *rest).swapaxes(1, 2).reshape(w_OI.shape))


def pre_tokenizer_name(tokenizer_json: dict) -> str:
  """The llama.cpp `tokenizer.ggml.pre` value matching the tokenizer's pre-tokenizer."""
  pre = tokenizer_json.get("pre_tokenizer") or {}
  if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get(
      "add_prefix_space", False):
    return GPT2_PRE
  raise ValueError(f"gguf export: unsupported pre-tokenizer {json.dumps(pre)[:200]} in "
                   "tokenizer.json; only ByteLevel(use_regex=True, add_prefix_space=False) "
                   "(llama.cpp 'gpt-2') is mapped — add its llama.cpp pre name here")


def vocabulary(tokenizer_json: dict, vocab_size: int):
  """(tokens, token types, merges) in id order, padded to the model's vocab_size."""
  import gguf  # noqa: PLC0415
  vocab = dict(tokenizer_json["model"]["vocab"])
  added = {t["content"]: t for t in tokenizer_json.get("added_tokens", [])}
  for content, t in added.items():
    vocab[content] = t["id"]
  by_id = {i: tok for tok, i in vocab.items()}
  if max(by_id) >= vocab_size:
    raise ValueError(f"tokenizer has id {max(by_id)} >= model vocab_size {vocab_size}")
  tokens, types = [], []
  for i in range(vocab_size):
    if i not in by_id:
      tokens.append(f"[PAD{i}]")
      types.append(gguf.TokenType.UNUSED)
    else:
      tok = by_id[i]
      tokens.append(tok)
      special = tok in added and added[tok].get("special", False)
      types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.NORMAL)
  merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
  return tokens, types, merges


def _encode(w: np.ndarray, gguf_type: str):
  """(data, raw_dtype or None) for one tensor in the requested type."""
  import gguf  # noqa: PLC0415
  w = np.ascontiguousarray(w, np.float32)
  if w.ndim == 1 or gguf_type == "f32":
    return w, None
  if gguf_type == "f16" or w.shape[-1] % 32:
    return w.astype(np.float16), None
  qtype = gguf.GGMLQuantizationType(TYPES[gguf_type])
  return gguf.quants.quantize(w, qtype), qtype


def export_gguf(hf_dir: str, out_path: str, gguf_type: str = "f16") -> str:
  import gguf  # noqa: PLC0415
  from safetensors.numpy import load_file  # noqa: PLC0415
  if gguf_type not in TYPES:
    raise ValueError(f"--gguf-type {gguf_type!r}: expected one of {list(TYPES)}")
  with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
    cfg = json.load(f)
  with open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8") as f:
    tok_json = json.load(f)
  sd = load_file(os.path.join(hf_dir, "model.safetensors"))
  n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
  head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
  rope = cfg.get("rope_parameters") or {}
  arch, permute, layer_tensors = architecture(cfg, os.path.join(hf_dir, "config.json"))

  w = gguf.GGUFWriter(out_path, arch)
  w.add_name("swahili100")
  w.add_context_length(cfg["max_position_embeddings"])
  w.add_embedding_length(cfg["hidden_size"])
  w.add_block_count(cfg["num_hidden_layers"])
  w.add_feed_forward_length(cfg["intermediate_size"])
  w.add_head_count(n_head)
  w.add_head_count_kv(n_kv)
  w.add_key_length(head_dim)
  w.add_value_length(head_dim)
  w.add_rope_dimension_count(head_dim)
  w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
  w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
  w.add_vocab_size(cfg["vocab_size"])
  w.add_file_type(FILE_TYPES[gguf_type])

  tokens, types, merges = vocabulary(tok_json, cfg["vocab_size"])
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre(pre_tokenizer_name(tok_json))
  w.add_token_list(tokens)
  w.add_token_types(types)
  w.add_token_merges(merges)
  specials = special_tokens.of(tokenizers.Tokenizer.from_str(json.dumps(tok_json)),
                              os.path.join(hf_dir, "tokenizer.json"))
  if specials.bos is not None:
    w.add_bos_token_id(specials.bos)
  w.add_eos_token_id(specials.eos)
  w.add_eot_token_id(specials.stop[-1])  # llama.cpp chat front-ends stop at the end of a turn
  w.add_pad_token_id(specials.pad)
  w.add_add_bos_token(False)  # the token records carry no BOS; prompts are encoded as is
  w.add_add_eos_token(False)

  def put(name, arr):
    data, raw = _encode(arr, gguf_type)
    w.add_tensor(name, data, raw_dtype=raw)

  put("token_embd.weight", sd["model.embed_tokens.weight"])
  for i in range(cfg["num_hidden_layers"]):
    for hf_name, g_name in layer_tensors.items():
      arr = sd[f"model.layers.{i}.{hf_name}.weight"]
      if permute and hf_name == "self_attn.q_proj":
        arr = permute_rope(arr, n_head)
      elif permute and hf_name == "self_attn.k_proj":
        arr = permute_rope(arr, n_kv)
      put(f"blk.{i}.{g_name}.weight", arr)
  put("output_norm.weight", sd["model.norm.weight"])
  if not cfg.get("tie_word_embeddings", False):
    put("output.weight", sd["lm_head.weight"])

  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return out_path
