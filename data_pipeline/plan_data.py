"""Data mixture and repetition plan for a data-constrained language: weights and epochs per source.

  swahili100 plan-data --input data/filtered --tokens 2.1e9 [--records data/records]
      [--rule muennighoff|rehydrate] [--tokenizer-report tokenizer/report.json] --output mixture.json

Counts per source (the documents' `source` field) the filtered documents, their UTF-8 bytes and
their dedup cluster sizes (`dup_cluster_size`, written by dedup; a document without one counts as
a cluster of 1). Tokens per source come from the records manifest with `--records` (the
`plan.split` split's per-source tokens: exactly what the loader samples), else they are estimated
as bytes / bytes-per-token, with the tokenizer's held-out bytes/token from `--tokenizer-report`
(train-tokenizer's report.json) or `plan.bytes_per_token` (4.93: sw-news, 16,384-token BPE).

Rules (configs/pipeline.py `plan`):
  muennighoff  Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"): the value of
               repeated data is D' = U + U R* (1 - exp(-R / R*)) with U unique tokens, R = epochs - 1
               and R* = 15.4 (swahili100/repetition.py, which `swahili100 ladder` uses too).
               One more token from a source is worth exp(-R / R*), a function of its
               epochs only, so equal epochs for every source maximise D'. Sources capped below the
               common level (`max_epochs`, 16: near worthless beyond; `source_max_epochs`) stay at
               their cap and the others share the rest (water-filling); if every source is capped
               the plan falls short of the budget and says so. More than `warn_epochs` (4) epochs
               is warned: up to ~4 epochs cost little versus unique data, beyond they fall off.
  rehydrate    FineWeb-2's rehydration (github.com/huggingface/fineweb-2, README): a document whose
               dedup cluster had n members is repeated r(n) times, `plan.rehydrate`: n = 1: 1,
               2: 2, 3-4: 3, 5-99: 5, 100-999: 8, 1000+: 1 (huge clusters are spam). The rehydrated
               sources are then given equal passes as above; a bucket's epochs are r(n) x passes
               and the cap applies to each source's most repeated bucket.

mixture.json: per source documents, bytes, tokens, `weight` (share of the training tokens: the
probability that a sampled token comes from the source, summing to 1), `document_weight` (the
per-document mixing probability that gives those token shares, for a loader that mixes records),
epochs, planned and effective tokens; for rehydrate, `repeats`: per cluster-size row (min_size,
max_size) its repeat, documents, tokens and epochs. A record-level loader gives record i a
probability proportional to its expected epochs: its source's `epochs` (muennighoff), or the
`epochs` of the row of its cluster size in its source's `repeats` (rehydrate), with
`swahili100.records.read_source_index` for the source and cluster size of every record.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from data_pipeline import shards
from swahili100 import records, repetition

RULES = ("muennighoff", "rehydrate")


@dataclass
class SourceCounts:
  """One source's counts: filtered documents and bytes by dedup cluster size, and tokens."""
  documents: int = 0
  bytes: int = 0
  clusters: dict = field(default_factory=dict)   # cluster size -> [documents, bytes]
  no_cluster_size: int = 0                       # documents without dup_cluster_size
  tokens: float = 0.0                            # of the documents the loader samples
  sampled_documents: int | None = None           # with --records: the split's documents

  def add(self, other: "SourceCounts") -> None:
    self.documents += other.documents
    self.bytes += other.bytes
    self.no_cluster_size += other.no_cluster_size
    for n, (d, b) in other.clusters.items():
      c = self.clusters.setdefault(n, [0, 0])
      c[0], c[1] = c[0] + d, c[1] + b


def _count_shard(args) -> dict[str, SourceCounts]:
  path, name, max_line_bytes = args
  out: dict[str, SourceCounts] = {}
  for doc in shards.read_shard(path, shards.Stats(), name=name, max_line_bytes=max_line_bytes):
    if not doc["text"].strip():   # tokenize drops these (`empty`): not training data
      continue
    s = out.setdefault(doc["source"], SourceCounts())
    n = doc.get("dup_cluster_size")
    if not (isinstance(n, int) and n > 0):
      n = 1
      s.no_cluster_size += 1
    b = shards.text_bytes(doc)
    s.add(SourceCounts(documents=1, bytes=b, clusters={n: [1, b]}))
  return out


def count_sources(input: str | Path, *, workers: int = 1, start_method: str = "fork",
                  max_line_bytes: int = shards.DEFAULT_MAX_LINE_BYTES) -> dict[str, SourceCounts]:
  """Per-source counts of every document under `input` (shards counted in `workers` processes)."""
  root = Path(input)
  paths = shards.list_shards(root)
  if not paths:
    raise FileNotFoundError(f"no *.jsonl / *.jsonl.gz shards under {root}: pass the filtered "
                            "shards (swahili100 filter --output)")
  tasks = [(p, shards.shard_name(p, root), max_line_bytes) for p in paths]
  total: dict[str, SourceCounts] = {}
  for part in shards.pool_map(_count_shard, tasks, workers, start_method=start_method):
    for name, s in part.items():
      total.setdefault(name, SourceCounts()).add(s)
  return dict(sorted(total.items()))


# ----------------------------------------------------------------------------- the two rules

def repeats(cluster_size, table: dict):
  """FineWeb-2's copies of a document by its dedup cluster size: the entry of the largest key
  <= size (sizes below 1, i.e. unknown, count as 1). Takes an int or an int array (e.g.
  `records.read_source_index(...).cluster_size`, for a loader that rehydrates records)."""
  keys = np.array(sorted(int(k) for k in table))
  values = np.array([int(table[str(k)]) for k in keys])
  i = np.searchsorted(keys, np.maximum(cluster_size, 1), side="right") - 1
  out = values[np.maximum(i, 0)]
  return int(out) if np.ndim(out) == 0 else out


def table_rows(table: dict) -> list[tuple[int, int | None, int]]:
  """(first size, last size or None, repeat) of every row of the rehydration table; the first
  row starts at 1 whatever its key, so every document falls in one row."""
  keys = sorted(int(k) for k in table)
  return [(1 if i == 0 else k, nxt - 1 if nxt else None, int(table[str(k)]))
          for i, (k, nxt) in enumerate(zip(keys, keys[1:] + [None]))]


def _label(first: int, last: int | None) -> str:
  return f"{first}+" if last is None else f"{first}" if first == last else f"{first}-{last}"


def water_fill(sizes: list[float], caps: list[float], budget: float) -> list[float]:
  """Passes per unit: one common level for all, units whose cap is below it at their cap, so that
  sum(passes * size) == budget, or every unit at its cap when the budget exceeds them all."""
  passes = [0.0] * len(sizes)
  order = sorted((i for i in range(len(sizes)) if sizes[i] > 0), key=lambda i: caps[i])
  left, free = float(budget), sum(sizes[i] for i in order)
  for k, i in enumerate(order):
    level = left / free
    if caps[i] >= level:
      for j in order[k:]:
        passes[j] = level
      break
    passes[i] = caps[i]
    left -= caps[i] * sizes[i]
    free -= sizes[i]
  return passes


def _caps(names: list[str], cfg) -> tuple[list[float], list[str]]:
  """Epoch cap of every source (`max_epochs`, lowered by `source_max_epochs`), and warnings."""
  per = {}
  for item in filter(None, (x.strip() for x in cfg.source_max_epochs.split(","))):
    name, _, value = item.partition("=")
    try:
      per[name.strip()] = float(value)
    except ValueError:
      raise ValueError(f"--config.plan.source_max_epochs={cfg.source_max_epochs!r}: expected "
                       "name=epochs[,name=epochs], e.g. cc100=1,wikipedia=8") from None
  unknown = sorted(set(per) - set(names))
  warnings = [f"source_max_epochs names {unknown}, not sources of the input {names}"] if unknown \
      else []
  return [min(cfg.max_epochs, per.get(n, math.inf)) for n in names], warnings


class Bucket(NamedTuple):
  """One row of the rehydration table within one source."""
  first: int            # cluster sizes first..last (None: no upper end)
  last: int | None
  repeat: int           # copies per pass (1 under the muennighoff rule)
  documents: int        # filtered documents
  sampled: float        # documents the loader samples (the records split's share of them)
  tokens: float         # the source's tokens times the bucket's share of its bytes


def _buckets(s: SourceCounts, rows: list, rehydrate: bool) -> list[Bucket]:
  scale = (s.documents if s.sampled_documents is None else s.sampled_documents) / s.documents
  out = []
  for first, last, r in rows:
    inside = [v for k, v in s.clusters.items() if k >= first and (last is None or k <= last)]
    d, b = sum(v[0] for v in inside), sum(v[1] for v in inside)
    if d:
      out.append(Bucket(first, last, r if rehydrate else 1, d, d * scale,
                        s.tokens * b / max(s.bytes, 1)))
  return out


def plan(sources: dict[str, SourceCounts], cfg) -> dict:
  """The mixture for `cfg.tokens` training tokens under `cfg.rule` (configs/pipeline.py `plan`)."""
  if cfg.rule not in RULES:
    raise ValueError(f"--config.plan.rule={cfg.rule!r}: expected {' | '.join(RULES)}")
  names = [n for n, s in sources.items() if s.tokens > 0]
  if not names or cfg.tokens <= 0:
    raise ValueError(f"nothing to plan: {len(names)} sources with tokens, --tokens {cfg.tokens:g}; "
                     "pass the filtered shards (and their records) and a positive budget")
  rehydrate = cfg.rule == "rehydrate"
  caps, warnings = _caps(names, cfg)
  rows = table_rows(cfg.rehydrate)
  parts = {n: _buckets(sources[n], rows, rehydrate) for n in names}
  # Water-filling over every (source, bucket): one common number of passes over the rehydrated
  # data, each bucket's epochs (repeat x passes) capped at its source's cap.
  units = [(k, b) for k, n in enumerate(names) for b in parts[n]]
  level = water_fill([b.repeat * b.tokens for _, b in units],
                     [caps[k] / b.repeat for k, b in units], cfg.tokens)
  epochs = {(k, b.first): b.repeat * p for (k, b), p in zip(units, level)}   # per bucket
  planned = [sum(epochs[k, b.first] * b.tokens for b in parts[n]) for k, n in enumerate(names)]
  draws = [sum(epochs[k, b.first] * b.sampled for b in parts[n]) for k, n in enumerate(names)]
  total = sum(planned)
  out = {}
  for k, n in enumerate(names):
    s = sources[n]
    eff = sum(repetition.effective_tokens(b.tokens, epochs[k, b.first], cfg.r_d_star)
              for b in parts[n])
    out[n] = {"documents": s.documents if s.sampled_documents is None else s.sampled_documents,
              "filtered_documents": s.documents, "bytes": s.bytes, "tokens": round(s.tokens),
              "weight": planned[k] / total, "document_weight": draws[k] / sum(draws),
              "epochs": planned[k] / s.tokens, "planned_tokens": round(planned[k]),
              "effective_tokens": round(eff)}
    if rehydrate:
      out[n]["repeats"] = [{"cluster_sizes": _label(b.first, b.last), "min_size": b.first,
                            "max_size": b.last, "repeat": b.repeat, "documents": b.documents,
                            "tokens": round(b.tokens), "epochs": epochs[k, b.first]}
                           for b in parts[n]]
    most = max(epochs[k, b.first] for b in parts[n])
    if most > cfg.warn_epochs + 1e-9:
      what = "its most repeated documents" if rehydrate else "its data"
      warnings.append(f"{n}: {most:.1f} epochs of {what} > {cfg.warn_epochs:g}: Muennighoff "
                      "et al. 2023 find repeats beyond ~4 epochs worth markedly less than unique "
                      f"tokens (effective {eff / planned[k]:.0%} of the planned tokens)")
    if rehydrate and s.no_cluster_size:
      warnings.append(f"{n}: {s.no_cluster_size} of {s.documents} documents have no "
                      "dup_cluster_size (input not deduplicated?); counted as clusters of 1")
  warnings += [f"{n}: {s.documents} documents but no tokens; left out"
               for n, s in sources.items() if s.tokens <= 0]
  if total < cfg.tokens * (1 - 1e-9):
    warnings.append(f"budget {cfg.tokens:.4g} tokens exceeds what the epoch caps allow: the plan "
                    f"covers {total:.4g} ({total / cfg.tokens:.0%}); beyond ~{cfg.max_epochs:g} "
                    "epochs repeated data is worth almost nothing: add data or train on fewer tokens")
  result = {"rule": cfg.rule, "target_tokens": cfg.tokens, "planned_tokens": round(total),
            "unique_tokens": round(sum(sources[n].tokens for n in names)),
            "effective_tokens": sum(r["effective_tokens"] for r in out.values()),
            "sources": out, "warnings": warnings}
  if rehydrate:
    result["passes"] = max(level)   # over the rehydrated data, before the caps
    result["repeat_table"] = [{"cluster_sizes": _label(a, b), "repeat": r} for a, b, r in rows]
  return result


# ----------------------------------------------------------------------------- tokens

def attach_tokens(sources: dict[str, SourceCounts], cfg, records_dir: str | None,
                  tokenizer_report: str | None) -> tuple[str, list[str]]:
  """Sets `tokens` (and, with records, `documents`) of every source; returns (how, warnings)."""
  warnings: list[str] = []
  if records_dir:
    manifest = records.read_manifest(records_dir)
    path = Path(records_dir) / records.MANIFEST
    manifest.shard_paths(records_dir, cfg.split)   # names the fix for a missing split
    per = manifest.splits[cfg.split].sources
    if per is not None:
      every = {}
      for info in manifest.splits.values():
        for n, c in (info.sources or {}).items():
          every[n] = every.get(n, 0) + c["documents"]
      for n, s in sources.items():
        if every.get(n, 0) != s.documents:
          warnings.append(f"{n}: {s.documents} filtered documents but {every.get(n, 0)} in "
                          f"{path}: were the records made from this input?")
        s.tokens = float(per.get(n, {}).get("tokens", 0))
        s.sampled_documents = per.get(n, {}).get("documents", 0)
      return f"records: {path}, split {cfg.split!r} (exact)", warnings
    warnings.append(f"{path} predates per-source counts (re-run `swahili100 tokenize` for exact "
                    "figures); tokens estimated from bytes")
  bpt, how = cfg.bytes_per_token, "plan.bytes_per_token (configs/pipeline.py)"
  if tokenizer_report:
    bpt = json.loads(Path(tokenizer_report).read_text())["heldout"]["bytes_per_token"]
    how = f"held-out bytes/token of {tokenizer_report}"
  for s in sources.values():
    s.tokens = s.bytes / bpt
  return f"estimated: bytes / {bpt:.3f} bytes per token ({how})", warnings


def table(result: dict) -> str:
  """The plan as a fixed-width table, for the terminal."""
  lines = [f"{'source':<16} {'documents':>11} {'tokens':>14} {'weight':>7} {'epochs':>7} "
           f"{'effective':>14}"]
  for n, r in result["sources"].items():
    lines.append(f"{n:<16} {r['documents']:>11,} {r['tokens']:>14,} {r['weight']:>7.4f} "
                 f"{r['epochs']:>7.2f} {r['effective_tokens']:>14,}")
    for b in r.get("repeats", []):
      lines.append(f"  cluster {b['cluster_sizes']:<8} x{b['repeat']:<3} {b['documents']:>9,} "
                   f"{b['tokens']:>14,} {'':>7} {b['epochs']:>7.2f}")
  lines.append(f"{'total':<16} {'':>11} {result['unique_tokens']:>14,} {1:>7.4f} "
               f"{result['planned_tokens'] / max(result['unique_tokens'], 1):>7.2f} "
               f"{result['effective_tokens']:>14,}")
  return "\n".join(lines)


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  c = cfg.plan
  p.add_argument("--output", required=True, help="the mixture file to write (mixture.json)")
  p.add_argument("--tokens", type=float, default=None,
                 help=f"training tokens to plan for (default {c.tokens:.4g})")
  p.add_argument("--rule", choices=RULES, default=None, help=f"default {c.rule}")
  p.add_argument("--records", default=None,
                 help="token records folder (swahili100 tokenize): exact tokens per source")
  p.add_argument("--tokenizer-report", default=None,
                 help="without --records: train-tokenizer's report.json for bytes/token")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "plan-data", __doc__, "plan", _flags,
                               common=("input", "workers", "max_line_bytes"))
  c, r = cfg.plan, cfg.runner
  sources = count_sources(args.input, workers=r.workers, start_method=r.start_method,
                          max_line_bytes=r.max_line_bytes)
  how, warnings = attach_tokens(sources, c, args.records, args.tokenizer_report)
  result = plan(sources, c)
  result = {"input": str(args.input), "tokens_from": how, **result,
            "warnings": warnings + result["warnings"], "config": c.to_dict()}
  shards.write_json(args.output, result)
  print(f"plan-data: rule {c.rule}, {c.tokens:.4g} training tokens; tokens {how}", file=sys.stderr)
  print(table(result), file=sys.stderr)
  for w in result["warnings"]:
    print(f"warning: {w}", file=sys.stderr)
  print(f"-> {args.output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
