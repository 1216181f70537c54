"""The Swahili benchmark tasks, each defined once: data, prompt, choices, scoring, baselines.

    task = TASKS["sib200"]
    items, data = load(task, "../shared/data/sib200-swh/dev.tsv", limit=0)   # or spec "hub"
    metrics, rows = run(task, items, tok, score_fn)        # score_fn: requests -> [(ll, greedy)]

Every task is zero-shot multiple choice scored like lm-evaluation-harness: the context, then each
choice after a " " delimiter; the choice with the highest summed log-likelihood is `acc`'s
prediction, the highest log-likelihood per character of the choice `acc_norm`'s (lm-eval's
acc_norm) and per UTF-8 byte `acc_bytes`'s (lm-eval's acc_bytes; equal to acc_norm for ASCII
choices, which all label words here are). Standard errors are lm-eval's: sample standard deviation
/ sqrt(n) = sqrt(p (1 - p) / (n - 1)). Baselines: `chance` = 1 / choices, `majority` = share of the
most frequent gold answer among the items evaluated.

Tasks:
- xcopa: XCOPA-sw (cambridgeltl/xcopa jsonl), lm-eval's `xcopa_sw` prompt exactly: the premise
  without its last character (the period) + " kwa sababu" (question = cause) or " kwa hiyo"
  (effect); choices with their first letter lower-cased.
- sib200: SIB-200 swh_Latn (TSV index_id, category, text), cloze "<text>\\nMada:" + " <word>".
- afrisenti: AfriSenti swa tweets (TSV tweet, label), cloze "<tweet>\\nHisia:" + " <word>".
- masakhanews: MasakhaNEWS swa (TSV category, headline, text, url), "<headline>\\nMada:" +
  " <word>"; masakhanews_text: the same on the article's first two sentences.
Label words are in LABEL_WORDS below, with why each was chosen.

`training_hooks(config)` turns `config.train.eval_tasks` into engine evaluation hooks.
"""

import dataclasses
import math
import re
from collections import Counter
from typing import Callable

import numpy as np

from swahili100 import fs, lm
from swahili100 import model as model_lib
from swahili100 import special_tokens
from swahili100.evals import EvalDataError, datasets, scoring

def prefix_id(tok) -> int:
  """The token every document follows in the records: the run's end-of-text (an imported
  model's own where its tokenizer is an open model's)."""
  return special_tokens.of(tok).eos
XCOPA_CONNECTORS = {"cause": "kwa sababu", "effect": "kwa hiyo"}  # lm-eval's xcopa_sw

# Dataset label -> the Swahili word scored after the prompt. One common, single word per label
# (multi-word choices lose log-likelihood per extra token, which acc_norm only partly undoes):
LABEL_WORDS = {
    "sib200": {  # FLORES topics; "Mada:" = "Topic:"
        "science/technology": "sayansi",   # science: the FLORES sentences are mostly science
        "travel": "usafiri",
        "politics": "siasa",
        "sports": "michezo",
        "health": "afya",
        "entertainment": "burudani",
        "geography": "jiografia",
    },
    "afrisenti": {  # "Hisia:" = "Feeling/sentiment:"
        "positive": "chanya",      # the standard Swahili terms for positive / negative sentiment
        "negative": "hasi",
        "neutral": "kawaida",      # "ordinary": "wastani" would read as a numeric average
    },
    "masakhanews": {  # news desks; "Mada:" = "Topic:"
        "business": "biashara",
        "entertainment": "burudani",
        "health": "afya",
        "politics": "siasa",
        "religion": "dini",
        "sports": "michezo",
        "technology": "teknolojia",
    },
}
TEXT_SENTENCES = 2  # masakhanews_text: sentences of the article that stand in for the headline


@dataclasses.dataclass(frozen=True)
class EvalTask:
  """A zero-shot multiple-choice task over one data file."""
  name: str
  fmt: str                                # format of `--data TASK=PATH`: jsonl | tsv
  columns: tuple[str, ...]                # columns every item must have
  hub: tuple[str, str, str, str]          # (dataset repo, file, revision, format): the TEST split
  context: Callable[[dict], str]
  choices: Callable[[dict], list[str]]    # without the " " delimiter
  gold: Callable[[dict], object]          # the item's answer: an index, or a label of `labels`
  item_id: Callable[[dict, int], str]     # stable id for pairing items across runs
  labels: tuple[str, ...] = ()            # cloze tasks: dataset labels, in choice order
  delimiter: str = " "

  def gold_index(self, item: dict) -> int:
    g = self.gold(item)
    if self.labels:
      return self.labels.index(g) if g in self.labels else -1
    try:
      g = int(g)
    except (TypeError, ValueError):
      return -1
    return g if 0 <= g < len(self.choices(item)) else -1


def _clean(text: str) -> str:
  """Whitespace runs (news text has non-breaking spaces and double spaces) as single spaces."""
  return " ".join(text.split())


def _first_sentences(text: str, n: int) -> str:
  return " ".join(re.split(r"(?<=[.!?])\s+", _clean(text))[:n])


def _xcopa_context(item: dict) -> str:
  return item["premise"].strip()[:-1] + " " + XCOPA_CONNECTORS[item["question"]]


def _lower_first(choice: str) -> str:
  return choice[0].lower() + choice[1:]


def _cloze(name: str, fmt: str, columns, hub, context, label_column, item_id) -> EvalTask:
  words = LABEL_WORDS[name.split("_")[0]]
  return EvalTask(name, fmt, tuple(columns), hub, context, lambda item: list(words.values()),
              lambda item: item[label_column], item_id, labels=tuple(words))


TASKS = {t.name: t for t in [
    EvalTask("xcopa", "jsonl", ("premise", "choice1", "choice2", "question", "label"),
         ("cambridgeltl/xcopa", "sw/test-00000-of-00001.parquet", "main", "parquet"),
         _xcopa_context,
         lambda item: [_lower_first(item["choice1"]), _lower_first(item["choice2"])],
         lambda item: item["label"], lambda item, i: str(item.get("idx", i))),
    _cloze("sib200", "tsv", ("index_id", "category", "text"),
           ("Davlan/sib200", "data/swh_Latn/test.tsv", "main", "tsv"),
           lambda item: _clean(item["text"]) + "\nMada:", "category",
           lambda item, i: str(item["index_id"])),
    _cloze("afrisenti", "tsv", ("tweet", "label"),
           ("masakhane/afrisenti", "data/swa/test.tsv", "main", "tsv"),
           lambda item: _clean(item["tweet"]) + "\nHisia:", "label", lambda item, i: str(i)),
    _cloze("masakhanews", "tsv", ("category", "headline", "text"),
           ("masakhane/masakhanews", "data/swa/test.tsv", "main", "tsv"),
           lambda item: _clean(item["headline"]) + "\nMada:", "category", lambda item, i: str(i)),
    _cloze("masakhanews_text", "tsv", ("category", "headline", "text"),
           ("masakhane/masakhanews", "data/swa/test.tsv", "main", "tsv"),
           lambda item: _first_sentences(item["text"], TEXT_SENTENCES) + "\nMada:", "category",
           lambda item, i: str(i)),
]}
NAMES = (*TASKS, "bpb")


def get(name: str, flag: str = "--tasks") -> EvalTask:
  if name not in TASKS:
    raise EvalDataError(f"{flag}: unknown task {name!r}; choose from {', '.join(NAMES)}")
  return TASKS[name]


def describe(task: EvalTask, spec: str) -> str:
  """The `data` field of a task's figures: the file, or hub:<repo>/<file>@<revision>."""
  if spec == datasets.HUB:
    repo, filename, revision, _ = task.hub
    return f"hub:{repo}/{filename}@{revision}"
  return spec


def load(task: EvalTask, spec: str, limit: int = 0, cache_dir: str | None = None,
         flag: str = "--data") -> tuple[list[dict], str]:
  """(items with an `id`, description of the data) from a local file or `hub`; the first
  `limit` items when limit > 0. Every item's answer is checked here, naming the file and row."""
  data = describe(task, spec)
  if spec == datasets.HUB:
    repo, filename, revision, fmt = task.hub
    path = datasets.hub_file(repo, filename, revision, cache_dir)
  else:
    path, fmt = spec, task.fmt
    if not fs.exists(path):
      raise EvalDataError(f"{flag} {task.name}={path}: no such file; give the {task.fmt} file "
                          f"of {task.name} (or {task.name}=hub for the public test split)")
  rows = datasets.read_rows(path, fmt)
  datasets.require_columns(rows, task.columns, path, fmt)
  rows = rows[:limit] if limit > 0 else rows
  items = []
  for i, row in enumerate(rows):
    if task.gold_index(row) < 0:
      raise EvalDataError(f"{path}: item {i + 1} has answer {task.gold(row)!r}, not one of "
                          f"{list(task.labels) or list(range(len(task.choices(row))))}")
    items.append({**row, "id": task.item_id(row, i)})
  return items, data


def requests(task: EvalTask, items: list[dict], tok) -> list[tuple[list[int], list[int]]]:
  """Every (context ids, choice ids) request, item by item, choice by choice."""
  prefix = prefix_id(tok)
  return [scoring.encode_pair(tok, task.context(item), task.delimiter + choice, prefix)
          for item in items for choice in task.choices(item)]


def stderr(values) -> float | None:
  """lm-eval's standard error of a mean: sample standard deviation / sqrt(n)."""
  v = np.asarray(values, np.float64)
  return float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None


def score(task: EvalTask, items: list[dict], scores) -> tuple[dict, list[dict]]:
  """(metrics, per-item rows) from each request's (log-likelihood, is_greedy)."""
  rows, k = [], 0
  for item in items:
    choices = task.choices(item)
    lls = np.asarray([s[0] for s in scores[k:k + len(choices)]])
    k += len(choices)
    chars = np.asarray([len(c) for c in choices], np.float64)
    nbytes = np.asarray([len(c.encode("utf-8")) for c in choices], np.float64)
    gold = task.gold_index(item)
    pred, pred_norm, pred_bytes = (int(np.argmax(lls)), int(np.argmax(lls / chars)),
                                   int(np.argmax(lls / nbytes)))
    rows.append({"task": task.name, "id": item["id"], "scores": lls.tolist(),
                 "prediction": pred, "prediction_norm": pred_norm, "prediction_bytes": pred_bytes,
                 "gold": gold, "correct": int(pred == gold), "correct_norm": int(pred_norm == gold),
                 "correct_bytes": int(pred_bytes == gold)})
  metrics = {}
  for name, key in (("acc", "correct"), ("acc_norm", "correct_norm"),
                    ("acc_bytes", "correct_bytes")):
    values = [r[key] for r in rows]
    metrics[name] = float(np.mean(values)) if values else None
    metrics[f"{name}_stderr"] = stderr(values)
  golds = Counter(r["gold"] for r in rows)
  metrics.update(n=len(rows), chance=1.0 / len(task.choices(items[0])) if items else None,
                 majority=max(golds.values()) / len(rows) if rows else None)
  return metrics, rows


def run(task: EvalTask, items: list[dict], tok, score_fn) -> tuple[dict, list[dict]]:
  """`score` of the scores `score_fn(requests)` gives (the JAX scorer, or any other)."""
  return score(task, items, score_fn(requests(task, items, tok)))


def text_bpb(docs: list[str], tok, score_fn, max_len: int) -> tuple[dict, list[dict]]:
  """Bits per UTF-8 byte of documents' text: every token of each document is predicted once
  (the first after the prefix token), long documents in `scoring.rolling_windows`; bytes are the
  text's UTF-8 bytes, as lm-eval's bits_per_byte counts them."""
  windows, owner, prefix = [], [], prefix_id(tok)
  for i, text in enumerate(docs):
    for w in scoring.rolling_windows(tok.encode(text).ids, prefix, max_len):
      windows.append(w)
      owner.append(i)
  scores = score_fn(windows) if windows else []
  nats, tokens = np.zeros(len(docs)), np.zeros(len(docs), np.int64)
  for i, (_, cont), (ll, _) in zip(owner, windows, scores):
    nats[i] -= ll
    tokens[i] += len(cont)
  nbytes = np.asarray([len(t.encode("utf-8")) for t in docs], np.int64)
  rows = [{"task": "bpb", "id": str(i), "nats": float(nats[i]), "bytes": int(nbytes[i]),
           "tokens": int(tokens[i])} for i in range(len(docs))]
  return {"bpb": lm.bits_per_byte(float(nats.sum()), float(nbytes.sum())),
          "loss": float(nats.sum()) / max(int(tokens.sum()), 1), "tokens": int(tokens.sum()),
          "bytes": int(nbytes.sum()), "n": len(docs)}, rows


def jax_scorer(graphdef, params, mesh, max_len: int, batch_size: int, min_len: int = 16):
  """score_fn of a model's (graphdef, params) on `mesh` (`scoring.loglikelihoods`)."""
  return lambda reqs: scoring.loglikelihoods(graphdef, params, reqs, mesh, max_len, batch_size,
                                             min_len)


def training_hooks(config) -> list:
  """Engine hooks `hook(step, params, graphdef, mesh) -> {'eval_<task>_acc', ...}` for the tasks
  of `config.train.eval_tasks` ("" = none; comma-separated), on `config.train.eval_limit` items
  (0 = all) of the files of `config.train.eval_data` ("xcopa=PATH,sib200=PATH"; TASK=hub fetches
  the public test split). `bpb` with a bpb=FILE entry scores that text file (eval_bpb_text_*);
  `bpb` alone adds nothing: the records' validation bpb is `bpb.validation_hook`."""
  t = config.train
  names = [n.strip() for n in str(t.get("eval_tasks", "") or "").split(",") if n.strip()]
  if not names:
    return []
  specs = datasets.parse_specs(str(t.get("eval_data", "") or ""), flag="config.train.eval_data")
  limit = int(t.get("eval_limit", 0) or 0)
  tok = lm.load_tokenizer(config.data.tokenizer)
  max_len, batch_size = int(config.data.seq_len), int(config.data.batch_size)
  min_len = scoring.min_len_for(model_lib.resolve(config.model, strict=False))
  hooks = []
  for name in names:
    if name != "bpb":
      get(name, flag="config.train.eval_tasks")
    if name == "bpb" and name not in specs:
      continue
    if name not in specs:
      raise EvalDataError(f"config.train.eval_tasks has {name} but config.train.eval_data has no "
                          f"{name}=PATH (e.g. --config.train.eval_data={name}=FILE or "
                          f"{name}=hub)")
    hooks.append(_hook(name, specs[name], limit, tok, max_len, batch_size, min_len))
  return hooks


def _hook(name, spec, limit, tok, max_len, batch_size, min_len):
  if name == "bpb":
    docs = datasets.documents(spec)
    docs = docs[:limit] if limit > 0 else docs

    def bpb_hook(step, params, graphdef, mesh):
      del step
      m, _ = text_bpb(docs, tok, jax_scorer(graphdef, params, mesh, max_len, batch_size,
                                            min_len), max_len)
      return {"eval_bpb_text_bpb": m["bpb"], "eval_bpb_text_loss": m["loss"]}
    return bpb_hook
  task = TASKS[name]
  items, _ = load(task, spec, limit, flag="config.train.eval_data")
  reqs = requests(task, items, tok)  # tokenized once, scored at every eval step

  def task_hook(step, params, graphdef, mesh):
    del step
    m, _ = score(task, items, scoring.loglikelihoods(graphdef, params, reqs, mesh, max_len,
                                                     batch_size, min_len))
    return {f"eval_{name}_acc": m["acc"], f"eval_{name}_acc_norm": m["acc_norm"]}
  return task_hook
