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


def summary(workdir: str | None) -> dict:
  """Last step, tokens seen, last train loss and last validation figures from training.jsonl."""
  out = {}
  for row in _training_log(workdir):
    for key, value in row.items():
      if isinstance(value, (int, float)) and (key in ("step", "loss", "tokens")
                                              or key.startswith(("eval", "val"))):
        out[key] = value
  return out


def render(config, num_params: int, workdir: str | None = None, step: int | None = None) -> str:
  m = config.model
  s = summary(workdir)
  evals = "\n".join(f"| {k} | {v:.4g} |" for k, v in s.items()
                    if k.startswith(("eval", "val"))) or "| (no evaluation in training.jsonl) | |"
  tokens = s.get("tokens")
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
{DATA_NOTE}

## Training
Checkpoint step: {step if step is not None else s.get('step', 'unknown')};
training tokens: {f'{tokens:,}' if tokens else 'unknown'};
last training loss: {s.get('loss', 'unknown')}.

## Evaluation (from logs/training.jsonl)
| metric | value |
|---|---|
{evals}

## Intended use and limits
Research and education on Swahili language modelling. A small model trained on limited,
news-heavy text: it produces fluent-looking but often wrong or biased text, knows little of the
world, and is not instruction-tuned unless aligned (`swahili100 align`). Do not use it for
decisions about people, or for medical, legal or financial advice.
"""
