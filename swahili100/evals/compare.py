"""Is B better than A? Paired bootstrap over the items both evaluations scored.

    lines = compare(load_report("a/eval.json"), load_report("b/eval.json"))

For a multiple-choice task the statistic is B's accuracy minus A's (`metric`: acc, acc_norm or
acc_bytes) on the items both files hold (paired by id); for text bpb, A's bits per byte minus
B's (lower is better, so positive again means B better), a ratio of sums resampled by document.
RESAMPLES resamples of the shared items with replacement, fixed SEED; the 95 % interval is the
2.5th and 97.5th percentiles. B is better (or worse) when the interval excludes 0, otherwise no
significant difference. A task present in both without per-item rows (the records' bpb) gets its
difference without an interval.
"""

import json
import math
import os

import numpy as np

from swahili100 import fs
from swahili100.evals import EvalDataError

RESAMPLES = 10_000
SEED = 0


def items_path(output: str) -> str:
  """The per-item file next to an eval.json: eval.json -> eval.items.jsonl."""
  root = output[:-len(".json")] if output.endswith(".json") else output
  return root + ".items.jsonl"


def load_report(path: str) -> dict:
  """An eval.json with its per-item rows under `rows` ({task: {id: row}})."""
  try:
    report = fs.read_json(path)
  except (OSError, json.JSONDecodeError) as e:
    raise EvalDataError(f"--compare {path}: cannot read it ({e}); pass eval.json files written "
                        "by `swahili100 evaluate --output`") from None
  if not isinstance(report, dict) or not isinstance(report.get("tasks"), dict):
    raise EvalDataError(f"--compare {path}: no `tasks`; rerun `swahili100 evaluate` to write the "
                        "task format")
  items = str(fs.Path(fs.absolute(path)).parent / os.path.basename(
      report.get("items") or items_path(path)))
  rows = {}
  if fs.exists(items):
    for line in fs.read_text(items).splitlines():
      if line.strip():
        row = json.loads(line)
        rows.setdefault(row["task"], {})[str(row["id"])] = row
  report["rows"] = rows
  return report


def paired_bootstrap(a, b, resamples: int = RESAMPLES, seed: int = SEED, stat=None):
  """(observed, low, high) of stat(b) - stat(a) over paired arrays, 95 % percentile interval.

  `a`, `b`: [n] per-item values (stat = mean) or [n, 2] (numerator, denominator) pairs."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if stat is None:
    stat = lambda x, idx: x[idx].mean(axis=-1)  # noqa: E731
  idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
  diffs = stat(b, idx) - stat(a, idx)
  observed = float(stat(b, np.arange(len(a))[None])[0] - stat(a, np.arange(len(a))[None])[0])
  low, high = np.percentile(diffs, [2.5, 97.5])
  return observed, float(low), float(high)


def _ratio(x, idx):
  """Sum of numerators / sum of denominators of the resampled rows (bits per byte)."""
  return x[idx, 0].sum(axis=-1) / np.maximum(x[idx, 1].sum(axis=-1), 1.0) / math.log(2)


def _verdict(task, diff, low, high, unit, scale) -> str:
  d, lo, hi = diff * scale, low * scale, high * scale
  figures = f"{d:+.1f} {unit}, 95 % CI [{lo:.1f}, {hi:.1f}]" if unit == "points" else (
      f"{d:+.4f} {unit}, 95 % CI [{lo:.4f}, {hi:.4f}]")
  if lo > 0:
    return f"B better on {task}: {figures}"
  if hi < 0:
    return f"A better on {task}: {figures}"
  return f"no significant difference on {task}: {figures}"


def compare(a: dict, b: dict, metric: str = "acc", resamples: int = RESAMPLES,
            seed: int = SEED) -> list[dict]:
  """One {task, n, diff, low, high, verdict} per task both reports hold."""
  key = {"acc": "correct", "acc_norm": "correct_norm", "acc_bytes": "correct_bytes"}[metric]
  out = []
  for task in [t for t in a["tasks"] if t in b["tasks"]]:
    ra, rb = a["rows"].get(task, {}), b["rows"].get(task, {})
    shared = sorted(set(ra) & set(rb))
    if not shared:
      if "bpb" in a["tasks"][task] and "bpb" in b["tasks"][task]:
        d = a["tasks"][task]["bpb"] - b["tasks"][task]["bpb"]
        out.append({"task": task, "n": 0, "diff": d, "low": None, "high": None, "verdict":
                    f"{'B' if d > 0 else 'A'} lower bpb on {task} by {abs(d):.4f} bits/byte "
                    "(no per-item rows: no confidence interval)"})
      continue
    if "nats" in ra[shared[0]]:  # text bpb: lower is better, so A - B
      xa = [[ra[i]["nats"], ra[i]["bytes"]] for i in shared]
      xb = [[rb[i]["nats"], rb[i]["bytes"]] for i in shared]
      diff, low, high = paired_bootstrap(xb, xa, resamples, seed, _ratio)
      out.append({"task": task, "n": len(shared), "diff": diff, "low": low, "high": high,
                  "verdict": _verdict(task, diff, low, high, "bits/byte", 1.0)})
      continue
    diff, low, high = paired_bootstrap([ra[i][key] for i in shared], [rb[i][key] for i in shared],
                                       resamples, seed)
    out.append({"task": task, "n": len(shared), "diff": diff, "low": low, "high": high,
                "verdict": _verdict(task, diff, low, high, "points", 100.0)})
  return out
