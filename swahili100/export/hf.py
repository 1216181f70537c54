"""JAX/NNX Transformer -> Hugging Face folder (loads with no custom code).

    folder = export_hf(config, model, tokenizer_path, out_dir, workdir=...)
    refused = unsupported(model_cfg, "gguf")   # switches a format cannot run: export refuses

The model already computes Llama math in the HF layout (see swahili100/model.py), so the weights
are a transpose: `nnx.Linear` kernels are [in, out], torch weights are [out, in]. The
architecture follows the switches: `LlamaForCausalLM`, or `Qwen3ForCausalLM` with qk_norm
(Llama plus a per-head RMSNorm on q and k before RoPE: the same math as model.py's qk_norm).
Switches no runtime of a format computes (relu2 MLP, logit soft-capping) are refused by name
rather than exported as a different model; qk_norm exports everywhere (GGUF: llama.cpp's qwen3).
zero_init_out changes only the initialisation, so it exports as is.
"""

import os

import numpy as np
import tokenizers

from swahili100 import special_tokens
from swahili100.export import model_card

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


# switch -> (its value when on, the formats that cannot run it, why)
SWITCHES = {
    "mlp_act": (lambda c: c.mlp_act != "swiglu", ("hf", "torch", "onnx", "gguf"),
                "Llama/Qwen3 MLPs are gated SwiGLU; no transformers or llama.cpp architecture "
                "computes down(relu(up x)^2) with this layout"),
    "logit_softcap": (lambda c: bool(c.logit_softcap), ("hf", "torch", "onnx", "gguf"),
                      "only Gemma 2's architecture soft-caps logits, and it differs elsewhere "
                      "(embedding scale, sandwich norms)"),
}


def unsupported(model_cfg, fmt: str) -> list[str]:
  """'switch=value: why' for each switch of `model_cfg` that format `fmt` cannot run."""
  out = []
  for name, (on, formats, why) in SWITCHES.items():
    if on(model_cfg) and fmt in formats:
      out.append(f"model.{name}={getattr(model_cfg, name)!r}: {why}")
  return out


def _np(x) -> np.ndarray:
  return np.asarray(x[...], dtype=np.float32)


def state_dict(model) -> dict[str, np.ndarray]:
  """HF Llama tensor names -> float32 arrays in torch layout ([out, in] for linears)."""
  c = model.config
  sd = {"model.embed_tokens.weight": _np(model.embed.embedding)}
  for i, block in enumerate(model.layers):
    p = f"model.layers.{i}."
    sd[p + "input_layernorm.weight"] = _np(block.attn_norm.scale)
    sd[p + "post_attention_layernorm.weight"] = _np(block.mlp_norm.scale)
    if c.qk_norm:
      sd[p + "self_attn.q_norm.weight"] = _np(block.attn.q_norm.scale)
      sd[p + "self_attn.k_norm.weight"] = _np(block.attn.k_norm.scale)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
      sd[p + f"self_attn.{name}.weight"] = _kernel(getattr(block.attn, name)).T
    for name in ("gate_proj", "up_proj", "down_proj"):
      sd[p + f"mlp.{name}.weight"] = _kernel(getattr(block.mlp, name)).T
  sd["model.norm.weight"] = _np(model.final_norm.scale)
  if not c.tie_embeddings:
    sd["lm_head.weight"] = _kernel(model.lm_head).T
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def _kernel(linear) -> np.ndarray:
  """[in, out] float32 kernel of an nnx.Linear (or a QuantLinear, dequantized)."""
  if hasattr(linear, "dequantized_kernel"):
    return np.asarray(linear.dequantized_kernel(), np.float32)
  return _np(linear.kernel)


def llama_config(model_cfg, max_position_embeddings: int = 2048):
  """The transformers config equal to `config.model` (RoPE in `rope_parameters`):
  `LlamaConfig`, or `Qwen3Config` when qk_norm is on."""
  import transformers  # noqa: PLC0415 ([export] extra)
  c = model_cfg
  refused = unsupported(c, "hf")
  if refused:
    raise ValueError("no Hugging Face architecture computes this model: " + "; ".join(refused))
  common = dict(
      vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.mlp_dim,
      num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
      num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim, hidden_act="silu",
      max_position_embeddings=max_position_embeddings, rms_norm_eps=c.norm_eps,
      rope_parameters={"rope_type": "default", "rope_theta": float(c.rope_theta)},
      tie_word_embeddings=bool(c.tie_embeddings), attention_bias=False,
      bos_token_id=special_tokens.BOS_ID, eos_token_id=special_tokens.EOS_ID,
      pad_token_id=special_tokens.PAD_ID, dtype="float32")
  if c.qk_norm:
    return transformers.Qwen3Config(**common, architectures=["Qwen3ForCausalLM"])
  return transformers.LlamaConfig(**common, mlp_bias=False, architectures=["LlamaForCausalLM"])


def save_tokenizer(tokenizer_path: str, out_dir: str, model_max_length: int = 2048):
  """Writes tokenizer.json + tokenizer_config.json (special tokens, chat template)."""
  from transformers import PreTrainedTokenizerFast  # noqa: PLC0415
  tok = tokenizers.Tokenizer.from_file(str(tokenizer_path))
  vocab = tok.get_vocab(with_added_tokens=True)
  for name, i in special_tokens.IDS.items():
    if vocab.get(name) != i:
      raise ValueError(f"tokenizer {tokenizer_path}: special token {name!r} has id "
                       f"{vocab.get(name)}, expected {i} (swahili100/special_tokens.py)")
  hf_tok = PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token=special_tokens.BOS, eos_token=special_tokens.ENDOFTEXT,
      pad_token=special_tokens.PAD, unk_token=None, model_max_length=model_max_length,
      additional_special_tokens=[special_tokens.SYSTEM, special_tokens.USER,
                                 special_tokens.ASSISTANT, special_tokens.END_OF_TURN],
      chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False)
  hf_tok.save_pretrained(out_dir)
  return hf_tok


def export_hf(config, model, tokenizer_path: str, out_dir: str, workdir: str | None = None,
              step: int | None = None) -> str:
  """Writes config.json, model.safetensors, tokenizer files, generation_config.json, README.md."""
  from safetensors.numpy import save_file  # noqa: PLC0415
  from transformers import GenerationConfig  # noqa: PLC0415
  os.makedirs(out_dir, exist_ok=True)
  max_len = int(config.data.get("seq_len", 2048)) if "data" in config else 2048
  hf_cfg = llama_config(model.config, max_position_embeddings=max_len)
  hf_cfg.save_pretrained(out_dir)
  sd = state_dict(model)
  save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  GenerationConfig(bos_token_id=special_tokens.BOS_ID, eos_token_id=list(special_tokens.STOP_IDS),
                   pad_token_id=special_tokens.PAD_ID, do_sample=True, temperature=0.8,
                   top_p=0.95, max_new_tokens=256).save_pretrained(out_dir)
  save_tokenizer(tokenizer_path, out_dir, model_max_length=max_len)
  n_params = sum(int(v.size) for v in sd.values())
  with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
    f.write(model_card.render(config, n_params, workdir=workdir, step=step))
  return out_dir
