"""The exported model's README.md: architecture, size, data and licences, training, evaluation."""

import json
import os

DATA_NOTE = """\
Trained on Swahili web and news text prepared by the Swahili-100 pipeline (clean -> dedup ->
quality filter -> byte-level BPE). The demo and benchmark runs use the Maneno Yetu Swahili news
corpus (research use only, not redistributable); evaluation sets: XCOPA-sw (CC BY 4.0),
MasakhaNEWS-swa (AFL-3.0), AfriSenti-swa (CC BY 4.0). Check the licences of the data you trained
on before publishing weights."""


def _training_log(workdir: str | None) -> list[dict]:
  path = os.path.join(workdir, "logs", "training.jsonl") if workdir else None
  if not path or not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def summary(workdir: str | None, step: int | None = None) -> dict:
  """Last step, tokens seen, train loss and validation figures from training.jsonl (rows up
  to `step` when given), plus `eval.json` (`swahili100 evaluate`) when the run has one."""
  out = {}
  for row in _training_log(workdir):
    if step is not None and isinstance(row.get("step"), int) and row["step"] > step:
      continue
    for key, value in row.items():
      if isinstance(value, (int, float)) and (key in ("step", "loss", "tokens_seen")
                                              or key.startswith(("eval", "val"))):
        out[key] = value
  path = os.path.join(workdir, "eval.json") if workdir else None
  if path and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
    for key, value in report.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[f"evaluate_{key}"] = value
  return out


def _records(config) -> str:
  """One line on the token records the model trained on (from their manifest.json)."""
  try:
    path = os.path.join(config.data.records_dir, "manifest.json")
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (AttributeError, KeyError, OSError, ValueError):
    return ""
  parts = [f"{name}: {s.get('documents', '?'):,} documents, {s.get('tokens', '?'):,} tokens"
           for name, s in manifest.get("splits", {}).items()]
  return (f"\n\nToken records (`{os.path.basename(os.path.normpath(config.data.records_dir))}`, "
          f"tokenizer SHA-256 `{manifest.get('tokenizer_sha256', '?')[:16]}`): "
          + "; ".join(parts) + ".")


def _quant_note(config) -> str:
  if "quant" not in config:
    return ""
  q = config.quant
  return (f"\nThese float32 weights are the dequantized {q.precision} (group size "
          f"{q.group_size}, method {q.method}) weights of a `swahili100 quantize` checkpoint.")


def render(config, num_params: int, workdir: str | None = None, step: int | None = None) -> str:
  m = config.model
  s = summary(workdir, step)
  evals = "\n".join(f"| {k} | {v:.4g} |" for k, v in s.items()
                    if k.startswith(("eval", "val"))) or "| (no evaluation in the run) | |"
  tokens = s.get("tokens_seen")
  if tokens is None and "step" in s and "data" in config:
    tokens = s["step"] * config.data.batch_size * config.data.seq_len
  return f"""---
language: sw
library_name: transformers
pipeline_tag: text-generation
tags: [swahili, llama, swahili100]
---
# Swahili-100 ({num_params / 1e6:.2f}M parameters)

A Llama-architecture decoder trained from scratch on Swahili by the Swahili-100 project
(JAX/Flax NNX), exported to `LlamaForCausalLM`; loads with `AutoModelForCausalLM` and
`AutoTokenizer`, no custom code.

## Architecture
| | |
|---|---|
| parameters | {num_params:,} |
| layers / d_model / mlp_dim | {m.num_layers} / {m.d_model} / {m.mlp_dim} |
| heads / kv heads / head_dim | {m.num_heads} / {m.num_kv_heads} / {m.head_dim} |
| vocabulary | {m.vocab_size} (byte-level BPE) |
| RoPE theta / RMSNorm eps | {m.rope_theta} / {m.norm_eps} |
| tied embeddings | {bool(m.tie_embeddings)} |

Chat format: `<|system|>`, `<|user|>`, `<|assistant|>` turns closed by `<|end|>`
(`tokenizer.apply_chat_template`); documents end with `<|endoftext|>`.

## Data
{DATA_NOTE}{_records(config)}

## Training
Checkpoint step: {step if step is not None else s.get('step', 'unknown')};
training tokens: {f'{tokens:,}' if tokens else 'unknown'};
last training loss: {f"{s['loss']:.4f}" if 'loss' in s else 'unknown'}.{_quant_note(config)}

## Evaluation (logs/training.jsonl; `evaluate_*`: eval.json)
| metric | value |
|---|---|
{evals}

## Intended use and limits
Research and education on Swahili language modelling. A small model trained on limited,
news-heavy text: it produces fluent-looking but often wrong or biased text, knows little of the
world, and is not instruction-tuned unless aligned (`swahili100 align`). Do not use it for
decisions about people, or for medical, legal or financial advice.
"""
