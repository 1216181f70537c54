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
import shutil

import numpy as np
import tokenizers

from swahili100 import config_lib, special_tokens
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
    "rope_type": (lambda c: config_lib.get(c, "rope_type", "default") != "default", ("gguf",),
                  "llama.cpp scales Llama 3 RoPE through a rope_freqs tensor this exporter does "
                  "not write yet; export to hf or onnx"),
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


def llama_config(model_cfg, max_position_embeddings: int = 2048,
                 specials: special_tokens.Specials = special_tokens.OWN):
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
      rope_parameters=rope_parameters(c),
      tie_word_embeddings=bool(c.tie_embeddings), attention_bias=False,
      bos_token_id=specials.bos, eos_token_id=specials.eos, pad_token_id=specials.pad,
      dtype="float32")
  if c.qk_norm:
    return transformers.Qwen3Config(**common, architectures=["Qwen3ForCausalLM"])
  return transformers.LlamaConfig(**common, mlp_bias=False, architectures=["LlamaForCausalLM"])


def rope_parameters(model_cfg) -> dict:
  """transformers 5's `rope_parameters` of `config.model` (plain, or Llama 3's scaling)."""
  c = model_cfg
  out = {"rope_type": config_lib.get(c, "rope_type", "default"), "rope_theta": float(c.rope_theta)}
  if out["rope_type"] == "llama3":
    out.update(factor=float(c.rope_factor), low_freq_factor=float(c.rope_low_freq_factor),
               high_freq_factor=float(c.rope_high_freq_factor),
               original_max_position_embeddings=int(c.rope_original_max_len))
  return out


def save_tokenizer(tokenizer_path: str, out_dir: str, model_max_length: int = 2048):
  """Writes tokenizer.json + tokenizer_config.json (special tokens, chat template). An imported
  model's tokenizer keeps its own special tokens and has no chat template of the project's."""
  from transformers import PreTrainedTokenizerFast  # noqa: PLC0415
  tok = tokenizers.Tokenizer.from_file(str(tokenizer_path))
  specials = special_tokens.of(tok, str(tokenizer_path))
  if specials.own:
    named = dict(bos_token=special_tokens.BOS, eos_token=special_tokens.ENDOFTEXT,
                 pad_token=special_tokens.PAD,
                 additional_special_tokens=[special_tokens.SYSTEM, special_tokens.USER,
                                            special_tokens.ASSISTANT, special_tokens.END_OF_TURN],
                 chat_template=CHAT_TEMPLATE)
  else:
    name = tok.id_to_token
    named = dict(bos_token=None if specials.bos is None else name(specials.bos),
                 eos_token=name(specials.eos), pad_token=name(specials.pad))
  hf_tok = PreTrainedTokenizerFast(
      tokenizer_object=tok, unk_token=None, model_max_length=model_max_length,
      clean_up_tokenization_spaces=False, **named)
  hf_tok.save_pretrained(out_dir)
  # The run's own tokenizer.json, byte for byte (transformers adds a post-processor that changes
  # nothing): an import of this folder then matches the records' tokenizer hash, and tokenizes
  # as the run did.
  shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
  return hf_tok


def export_hf(config, model, tokenizer_path: str, out_dir: str, workdir: str | None = None,
              step: int | None = None) -> str:
  """Writes config.json, model.safetensors, tokenizer files, generation_config.json, README.md."""
  from safetensors.numpy import save_file  # noqa: PLC0415
  from transformers import GenerationConfig  # noqa: PLC0415
  os.makedirs(out_dir, exist_ok=True)
  max_len = int(config.data.get("seq_len", 2048)) if "data" in config else 2048
  specials = special_tokens.of(tokenizers.Tokenizer.from_file(str(tokenizer_path)),
                              str(tokenizer_path))
  hf_cfg = llama_config(model.config, max_position_embeddings=max_len, specials=specials)
  hf_cfg.save_pretrained(out_dir)
  sd = state_dict(model)
  save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  GenerationConfig(bos_token_id=specials.bos, eos_token_id=list(specials.stop),
                   pad_token_id=specials.pad, do_sample=True, temperature=0.8,
                   top_p=0.95, max_new_tokens=256).save_pretrained(out_dir)
  save_tokenizer(tokenizer_path, out_dir, model_max_length=max_len)
  n_params = sum(int(v.size) for v in sd.values())
  with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
    f.write(model_card.render(config, n_params, workdir=workdir, step=step, specials=specials))
  return out_dir


# ----------------------------------------------------------------------------- HF -> model

class HFCheckpointError(ValueError):
  """A Hugging Face folder that cannot be imported exactly; the message names the file, the
  field or the tensor, and what to do."""


# HF architecture -> whether it carries per-head q/k norms (model.qk_norm)
ARCHITECTURES = {"LlamaForCausalLM": False, "Qwen3ForCausalLM": True}
# config.json fields whose any value other than these changes what the model computes
_EXACT = {"hidden_act": ("silu", None), "attention_bias": (False, None), "mlp_bias": (False, None),
          "use_sliding_window": (False, None), "quantization_config": (None,),
          "partial_rotary_factor": (1, 1.0, None), "logit_scale": (None, 1, 1.0)}
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads")


def _refuse(where: str, field: str, value, why: str):
  raise HFCheckpointError(f"{where}: {field}={value!r}: {why}; the model computes only Llama "
                          "(plain or Llama 3 RoPE, no biases) and Qwen3 exactly, and an "
                          "approximation is not imported")


def _rope(hf_cfg: dict, where: str) -> dict:
  """model.rope_* from transformers 5's `rope_parameters` or the Hub's top-level `rope_theta`
  and `rope_scaling` (older files; `type` in place of `rope_type` in the oldest)."""
  params = hf_cfg.get("rope_parameters") or {}
  if params and all(isinstance(v, dict) for v in params.values()):  # per layer type
    if set(params) != {"full_attention"}:
      _refuse(where, "rope_parameters", params, "RoPE per layer type (sliding layers)")
    params = params["full_attention"]
  scaling = hf_cfg.get("rope_scaling") or params
  theta = params.get("rope_theta", hf_cfg.get("rope_theta", 10000.0))
  kind = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
  field = "rope_scaling" if hf_cfg.get("rope_scaling") else "rope_parameters"
  out = {"rope_theta": float(theta), "rope_type": kind}
  if kind == "default":
    return out
  if kind != "llama3":
    _refuse(where, f"{field}.rope_type", kind, "only plain RoPE and Llama 3's scaling are "
            "implemented (swahili100/model.py rope_inv_freq)")
  keys = {"factor": "rope_factor", "low_freq_factor": "rope_low_freq_factor",
          "high_freq_factor": "rope_high_freq_factor",
          "original_max_position_embeddings": "rope_original_max_len"}
  for key, name in keys.items():
    if key not in scaling:
      raise HFCheckpointError(f"{where}: {field} of rope_type llama3 lacks {key!r}; add it as "
                              "the model's published config.json has it")
    out[name] = (int if key.startswith("original") else float)(scaling[key])
  return out


def model_fields(hf_cfg: dict, where: str) -> dict:
  """`config.model` fields of an HF Llama / Qwen3 `config.json` (a dict read from `where`);
  anything the model cannot compute exactly is refused with HFCheckpointError naming it."""
  arch = hf_cfg.get("architectures") or []
  if len(arch) != 1 or arch[0] not in ARCHITECTURES:
    _refuse(where, "architectures", arch, f"supported: {', '.join(ARCHITECTURES)}")
  for field in _REQUIRED:
    if field not in hf_cfg:
      raise HFCheckpointError(f"{where}: no {field!r}; use the config.json published with "
                              "the weights")
  for field, allowed in _EXACT.items():
    if hf_cfg.get(field) not in allowed:
      _refuse(where, field, hf_cfg.get(field), f"expected {allowed[0]!r}")
  layer_types = set(hf_cfg.get("layer_types") or ["full_attention"])
  if layer_types != {"full_attention"}:
    _refuse(where, "layer_types", sorted(layer_types), "sliding-window layers")
  heads = int(hf_cfg["num_attention_heads"])
  fields = {
      "vocab_size": int(hf_cfg["vocab_size"]), "d_model": int(hf_cfg["hidden_size"]),
      "num_layers": int(hf_cfg["num_hidden_layers"]), "num_heads": heads,
      "num_kv_heads": int(hf_cfg.get("num_key_value_heads") or heads),
      "head_dim": int(hf_cfg.get("head_dim") or int(hf_cfg["hidden_size"]) // heads),
      "mlp_dim": int(hf_cfg["intermediate_size"]),
      "norm_eps": float(hf_cfg.get("rms_norm_eps", 1e-6)),
      "tie_embeddings": bool(hf_cfg.get("tie_word_embeddings", False)),
      "init_std": float(hf_cfg.get("initializer_range", 0.02)),
      "qk_norm": ARCHITECTURES[arch[0]], "mlp_act": "swiglu", "logit_softcap": 0.0,
      "zero_init_out": False, **_rope(hf_cfg, where)}
  if heads % fields["num_kv_heads"]:
    _refuse(where, "num_key_value_heads", fields["num_kv_heads"],
            f"must divide num_attention_heads={heads}")
  return fields


_SUBLAYERS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
              "attn": "self_attn", "mlp": "mlp"}


def hf_name(path: tuple) -> tuple[str, bool]:
  """(HF tensor name, whether torch's layout is the transpose) of a model parameter's path,
  e.g. ('layers', 0, 'attn', 'q_proj', 'kernel') -> ('model.layers.0.self_attn.q_proj.weight',
  True): the one name map of import (state_dict is its inverse, tested bit for bit)."""
  if path == ("embed", "embedding"):
    return "model.embed_tokens.weight", False
  if path == ("final_norm", "scale"):
    return "model.norm.weight", False
  if path == ("lm_head", "kernel"):
    return "lm_head.weight", True
  _, i, sub, *rest = path
  name = ".".join(["model.layers", str(i), _SUBLAYERS[sub], *rest[:-1], "weight"])
  return name, rest[-1] == "kernel"
