"""The exported model's README.md, stating only what the run recorded.

Provenance is read, never assumed: the token records' manifest (tokenizer SHA-256, documents and
tokens per split) and the `stats.json` chain of the data phases that made them (each phase's
`input` leads back to the download's sources and their licences); the training log (steps,
tokens seen, last loss, validation figures); the alignment stage and its data file for SFT/DPO
runs (and, through `init.from`, the runs before them); and `eval.json` from `swahili100
evaluate`. What is not on record is written as not recorded. The front matter's `model-index`
(the Hub's evaluation results) carries eval.json's figures as recorded, nothing else. A card is
for publication: it names runs relative to the exported one and files by their names, never by
an absolute path of the machine it was made on.
"""

import os

from swahili100 import config_lib, fs, metrics, special_tokens

PHASE_FILE = "stats.json"


def _json(path):
  try:
    return fs.read_json(path)
  except (OSError, ValueError):
    return None


def _resolve(folder: str, after: str) -> str:
  """A phase's recorded `input` as a path: as recorded when it exists, else the folder of that
  name beside `after` (the phase folders of one pipeline sit side by side)."""
  if fs.is_remote(folder) or os.path.exists(folder):
    return fs.absolute(folder)
  return os.path.join(os.path.dirname(after.rstrip("/")), os.path.basename(folder.rstrip("/")))


def data_lineage(records_dir: str | None) -> list[dict]:
  """The `stats.json` of the records folder and of every phase folder before it, newest first
  (each phase records its `input`); stops where the chain is broken."""
  out, folder, seen = [], records_dir, set()
  while folder and folder not in seen and fs.exists(fs.join(folder, PHASE_FILE)):
    seen.add(folder)
    stats = _json(fs.join(folder, PHASE_FILE))
    if not isinstance(stats, dict):
      break
    out.append({"folder": folder, **stats})
    folder = _resolve(stats["input"], folder) if stats.get("input") else None
  return out


def sources(lineage: list[dict]) -> dict:
  """{source name: {documents, licence, provenance...}} of the download phase in `lineage`."""
  for stats in lineage:
    if stats.get("phase") == "download":
      return {name: {"documents": s.get("docs", {}).get("out"),
                     **(s.get("provenance") or {})} for name, s in stats.get("sources", {}).items()}
  return {}


def _origin(source: dict) -> str:
  for key in ("path", "repo", "url", "tfds"):
    if source.get(key):
      return _public(str(source[key]))
  return "not recorded"


def _public(path: str) -> str:
  """A path as a published card may name it: a local absolute path by its last part."""
  return os.path.basename(path.rstrip("/")) if os.path.isabs(path) else path


def _relative(path: str, exported: str | None) -> str:
  """A run folder named relative to the exported run ("this run" for itself)."""
  if fs.is_remote(path):
    return path
  if not exported or fs.is_remote(exported):
    return _public(path)
  rel = os.path.relpath(fs.absolute(path), fs.absolute(exported))
  return "this run" if rel == "." else rel


# eval.json metric -> (model-index metric type, its readable name)
METRICS = {"acc": ("accuracy", "accuracy"), "acc_norm": ("acc_norm", "length-normalised accuracy"),
           "acc_bytes": ("acc_bytes", "byte-normalised accuracy"),
           "bpb": ("bits_per_byte", "bits per byte")}


def eval_results(workdir) -> list:
  """eval.json's figures as huggingface_hub `EvalResult`s (the card's `model-index`)."""
  from huggingface_hub import EvalResult  # noqa: PLC0415 ([export] extra)
  report = _json(fs.join(workdir, "eval.json")) if workdir else None
  tasks = (report.get("tasks") or {}) if isinstance(report, dict) else {}
  out = []
  for task, m in tasks.items():
    data = str(m.get("data", ""))
    if data.startswith("records:"):    # bits/byte on the run's own validation records
      dataset = {"dataset_type": "swahili100-records", "dataset_split": "validation",
                 "dataset_name": f"{_public(data[len('records:'):].split(' (')[0])} (validation)"}
    elif data.startswith("hub:"):      # hub:<org>/<repo>/<file>@<revision>
      where, _, revision = data[len("hub:"):].rpartition("@")
      dataset = {"dataset_type": "/".join(where.split("/")[:2]), "dataset_name": task,
                 "dataset_revision": revision or None,
                 "dataset_config": where.split("/", 2)[2] if where.count("/") >= 2 else None}
    else:                              # a local file of the task
      dataset = {"dataset_type": task, "dataset_name": _public(data) or task}
    kind = "text-generation" if task == "bpb" else "text-classification"
    for key, (metric, name) in METRICS.items():
      value = m.get(key)
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(EvalResult(task_type=kind, task_name=task, metric_type=metric,
                              metric_name=name, metric_value=value, **dataset))
  return out


def _manifest(records_dir):
  return _json(fs.join(records_dir, "manifest.json")) if records_dir else None


def _eval_rows(workdir) -> list[tuple[str, str, float]]:
  """(task, metric, value) from `<workdir>/eval.json` (the project's task format or the flat
  older one)."""
  report = _json(fs.join(workdir, "eval.json")) if workdir else None
  if not isinstance(report, dict):
    return []
  rows = []
  for task, m in (report.get("tasks") or {}).items():
    for key in ("acc", "acc_norm", "bpb", "loss", "n", "chance", "majority"):
      if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool):
        rows.append((task, key, m[key]))
  for key, value in report.items():
    if key != "tasks" and isinstance(value, (int, float)) and not isinstance(value, bool):
      rows.append(("(run)", key, value))
  return rows


def _training(workdir, step) -> dict:
  out = {}
  for row in metrics.read_log(workdir) if workdir else []:
    if step is not None and isinstance(row.get("step"), int) and row["step"] > step:
      continue
    for key, value in row.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[key] = value
  return out


def _stage_lines(workdir, config, step) -> list[str]:
  """One paragraph per training stage, newest first (DPO <- SFT <- pretraining)."""
  lines, seen, exported = [], set(), workdir
  while workdir and workdir not in seen:
    seen.add(workdir)
    if "import" in config:   # a `swahili100 import` folder: where its weights came from
      lines.append(f"- **imported** from `{_public(config['import'].source)}` "
                   f"({config['import'].architecture}).")
      break
    t = _training(workdir, step)
    stage = config.align.stage if "align" in config else "pretraining"
    where = _relative(workdir, exported)
    what = (f"**{stage}** (`{where}`): step {t.get('step', 'not recorded')}, "
            f"{t['tokens_seen']:,} tokens seen, last training loss {t['loss']:.4f}"
            if "tokens_seen" in t and "loss" in t else f"**{stage}** (`{where}`): no "
            "training log recorded")
    if "align" in config:
      what += f"; data `{_public(str(config.align.data))}`"
    lines.append(f"- {what}.")
    base = config_lib.init_from(config) or ("align" in config and config.align.get("base"))
    if not base:   # (older aligned runs named their base align.base)
      break
    workdir, step = _workdir_of(base), None
    path = fs.join(workdir, "config.json")
    if not fs.exists(path):
      lines.append(f"- base model `{_relative(base, exported)}` (its config is not on record).")
      break
    config = config_lib.from_json(path)
  return lines


def _workdir_of(path: str) -> str:
  p = fs.Path(path)
  if p.name.isdigit() and p.parent.name == "checkpoints":
    return str(p.parent.parent)
  return str(p)


def _quant_note(config) -> str:
  if "quant" not in config:
    return ""
  q = config.quant
  return (f"\nThese float32 weights are the dequantized {q.precision} (group size "
          f"{q.group_size}, method {q.method}) weights of a `swahili100 quantize` checkpoint.\n")


def front_matter(workdir) -> str:
  """The card's YAML (huggingface_hub's own writer): tags and the `model-index` of eval.json."""
  from huggingface_hub import ModelCardData  # noqa: PLC0415 ([export] extra)
  name = os.path.basename(str(workdir).rstrip("/")) if workdir else "model"
  return ModelCardData(language="sw", library_name="transformers",
                       pipeline_tag="text-generation", tags=["swahili", "llama", "swahili100"],
                       model_name=f"swahili100-{name}",
                       eval_results=eval_results(workdir) or None).to_yaml()


def _tokens_line(specials: special_tokens.Specials) -> str:
  if specials.own:
    return ("Chat format: `<|system|>`, `<|user|>`, `<|assistant|>` turns closed by `<|end|>`\n"
            "(`tokenizer.apply_chat_template`); documents end with `<|endoftext|>`.")
  eos = next(n for n, i in specials.names.items() if i == specials.eos)
  return (f"The imported model's own tokenizer and special tokens: documents end with `{eos}`; "
          "no chat format of this project's.")


def render(config, num_params: int, workdir: str | None = None, step: int | None = None,
           specials: special_tokens.Specials = special_tokens.OWN) -> str:
  m = config.model
  records_dir = config.data.get("records_dir") if "data" in config else None
  lineage = data_lineage(records_dir)
  srcs = sources(lineage)
  manifest = _manifest(records_dir)
  if srcs:
    data_lines = [f"- `{name}`: {s.get('documents', 'unknown')} documents, licence "
                  f"{s.get('licence', 'not recorded')}; from "
                  f"{_origin(s)}"
                  + (f"@{s['revision']}" if s.get("revision") else "") for name, s in srcs.items()]
  else:
    data_lines = ["- The sources of the training data are not recorded (no download "
                  "`stats.json` reachable from the token records)."]
  phases = [f"{s.get('phase', '?')} ({s.get('docs', {}).get('out', '?')} documents out)"
            for s in reversed(lineage) if s.get("phase") not in (None, "download")]
  if phases:
    data_lines.append("- Pipeline: " + " -> ".join(phases) + ".")
  if manifest:
    splits = "; ".join(f"{name}: {s.get('documents', '?'):,} documents, "
                       f"{s.get('tokens', '?'):,} tokens"
                       for name, s in manifest.get("splits", {}).items())
    data_lines.append(f"- Token records: {splits}; tokenizer SHA-256 "
                      f"`{manifest.get('tokenizer_sha256', 'not recorded')}`.")
  evals = _eval_rows(workdir)
  eval_table = ("| task | metric | value |\n|---|---|---|\n" + "\n".join(
      f"| {t} | {k} | {v:.4g} |" for t, k, v in evals)) if evals else \
      "No `swahili100 evaluate` report (eval.json) is recorded for this run."
  t = _training(workdir, step)
  val = {k: v for k, v in t.items() if k.startswith("eval_")}
  val_line = (", ".join(f"{k} {v:.4g}" for k, v in val.items()) if val
              else "no validation figures recorded")
  stages = _stage_lines(workdir, config, step)
  imported = any("**imported**" in line for line in stages)
  origin = ("continued on Swahili from an imported open model (below)" if imported
            else "trained from scratch on Swahili")
  front, chat = front_matter(workdir), _tokens_line(specials)
  arch = "Qwen3ForCausalLM" if m.get("qk_norm") else "LlamaForCausalLM"
  return f"""---
{front.rstrip()}
---
# Swahili-100 ({num_params / 1e6:.2f}M parameters)

A decoder {origin} by the Swahili-100 project (JAX/Flax NNX), exported to `{arch}`; loads
with `AutoModelForCausalLM` and `AutoTokenizer`, no custom code.

## Architecture
| | |
|---|---|
| parameters | {num_params:,} |
| layers / d_model / mlp_dim | {m.num_layers} / {m.d_model} / {m.mlp_dim} |
| heads / kv heads / head_dim | {m.num_heads} / {m.num_kv_heads} / {m.head_dim} |
| vocabulary | {m.vocab_size} (byte-level BPE) |
| RoPE theta / RMSNorm eps | {m.rope_theta} / {m.norm_eps} |
| tied embeddings | {bool(m.tie_embeddings)} |

{chat}

## Training data (as recorded by the pipeline)
{chr(10).join(data_lines)}

Check the licences above before publishing weights or outputs.

## Training (from logs/training.jsonl)
- Exported checkpoint: {f"step {step}" if step is not None else "not recorded"}.
{chr(10).join(stages)}
- Validation at the exported step: {val_line}.
{_quant_note(config)}
## Evaluation (eval.json)
{eval_table}

## Intended use and limits
Research and education on Swahili language modelling. A small model trained on limited text:
it produces fluent-looking but often wrong or biased text, knows little of the world, and is
not instruction-tuned unless aligned (`swahili100 align`). Do not use it for decisions about
people, or for medical, legal or financial advice.
"""


def summary(workdir: str | None, step: int | None = None) -> dict:
  """Training-log figures up to `step` plus eval.json's, as a flat dict (tests, reports)."""
  out = {k: v for k, v in _training(workdir, step).items()
         if k in ("step", "loss", "tokens_seen") or k.startswith("eval")}
  out.update({f"evaluate_{t}_{k}" if t != "(run)" else f"evaluate_{k}": v
              for t, k, v in _eval_rows(workdir)})
  return out

