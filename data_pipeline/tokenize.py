"""Phase 6: encode filtered shards into token records (swahili100/records.py, docs/ARCHITECTURE.md).

  swahili100 tokenize --input data/filtered --tokenizer tokenizer/swahili_bpe.json \
      --output data/records [--validation-fraction 0.01] [--num-shards 8] [--workers 2]

Two steps, both restartable:
1. encode (`shards.run_units` over input shards, `--workers N` processes started with "spawn",
   `tokenize.start_method`): each input shard's documents are encoded with
   `Tokenizer.encode_batch_fast` in batches of `--batch-docs`, the end-of-text id appended (the
   project's `<|endoftext|>`, or an imported open model's own: `special_tokens.of`), and
   streamed to `parts/<shard>.ids` (uint32) and `.meta` (length, split, text bytes, source,
   dedup cluster size per document), then a marker `parts/<shard>.done` with the shard's stats
   and source names. Shards with a marker are skipped on rerun.
   A document goes to validation when the BLAKE2b hash of its id falls under
   `--validation-fraction` (the hash train-tokenizer holds out by), so the split does not depend
   on `--workers` or shard order. Text that spells a special token is encoded as plain text.
2. write (sequential, in input-shard order): train documents round-robin over `--num-shards`
   ArrayRecord shards, validation over `--num-validation-shards`; every shard written to a .tmp
   and renamed; per split `<split>-sources.npy` (source id of every record, in the order of the
   split's shards read one after another) and `<split>-clusters.npy` (its `dup_cluster_size`,
   0 if absent); `manifest.json` (tokenizer SHA-256, dtype, counts, per-source counts, source
   names) and `stats.json` last. Outputs are byte-identical for any `--workers` and after a
   SIGKILL + rerun.

Accounting (stats.json, no timings so a rerun writes identical bytes; run.json has the timing and
skipped shards): docs in == train + validation + dropped (bad lines by reason, `empty`
for documents with no text); dropped documents go to `removed/<shard>` with their reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tokenizers

from data_pipeline import shards
from data_pipeline.train_tokenizer import id_unit
from swahili100 import records, special_tokens

PARTS = "parts"


def _load_tokenizer(path: str):
  tok = tokenizers.Tokenizer.from_file(path)
  tok.encode_special_tokens = True   # "<|endoftext|>" inside a document is text, not EOS
  return tok


# One per document: `source` indexes the part marker's `sources` list; `cluster` is the document's
# dedup `dup_cluster_size` (0: the input was not deduplicated).
META = np.dtype([("length", "<i8"), ("validation", "?"), ("bytes", "<i8"), ("source", "<u2"),
                 ("cluster", "<u4")])
META_FORMAT = 2   # in parts/settings.json: parts written with another META are not reused
_READ_DOCS = 1 << 12   # documents per chunk when merging parts (bounded memory)


def _cluster_size(doc: dict) -> int:
  c = doc.get("dup_cluster_size")
  return min(c, 2**32 - 1) if isinstance(c, int) and c > 0 else 0


def _part_paths(output: Path, name: str) -> tuple[Path, Path, Path]:
  """(ids file, per-document META file, marker) of one input shard's encoded part."""
  base = output / PARTS / name
  return tuple(base.with_name(base.name + ext) for ext in (".ids", ".meta", ".done"))


def encode_shard(args) -> dict:
  """Worker: one input shard -> parts/<name>.{ids,meta} + removed/<name>. Returns its stats,
  plus `sources`: the source names its META `source` field indexes, in first-seen order.

  Streams: each batch's ids (uint32 little-endian, EOS appended) and META rows are appended to
  .tmp files, renamed when the shard is complete, so memory is one batch whatever the shard size.
  """
  path, name, output, tokenizer, val_fraction, batch_docs, max_line_bytes = args
  tok = _load_tokenizer(tokenizer)
  stats = shards.Stats()
  ids_path, meta_path, _ = _part_paths(output, name)
  ids_path.parent.mkdir(parents=True, exist_ok=True)
  tmps = [p.with_name(p.name + ".tmp") for p in (ids_path, meta_path)]
  eos = np.array([special_tokens.of(tok, tokenizer).eos], "<u4")
  sources: dict[str, int] = {}

  with open(tmps[0], "wb") as fi, open(tmps[1], "wb") as fm, \
       shards.ShardWriter(output / shards.REMOVED_DIR / name) as rw:

    def flush(batch: list[dict]) -> None:
      meta = np.zeros(len(batch), META)
      chunks = []
      for k, (doc, enc) in enumerate(zip(batch, tok.encode_batch_fast([d["text"] for d in batch]))):
        chunks += [np.asarray(enc.ids, "<u4"), eos]
        b = shards.text_bytes(doc)
        meta[k] = (len(enc.ids) + 1, id_unit(doc["id"]) < val_fraction, b,
                   sources.setdefault(doc["source"], len(sources)), _cluster_size(doc))
        stats.docs_out += 1
        stats.bytes_out += b
      stats.note("tokens", int(meta["length"].sum()))
      fi.write(np.concatenate(chunks).tobytes())
      fm.write(meta.tobytes())
      shards.event("unit_progress", docs=stats.docs_out)

    batch: list[dict] = []
    for doc in shards.read_shard(path, stats, name=name, max_line_bytes=max_line_bytes,
                                 removed=rw.write):
      if not doc["text"].strip():
        stats.drop("empty", shards.text_bytes(doc))
        rw.write({"reason": "empty", "doc": doc})
        continue
      batch.append(doc)
      if len(batch) >= batch_docs:
        flush(batch)
        batch = []
    if batch:
      flush(batch)
  for tmp, final in zip(tmps, (ids_path, meta_path)):
    os.replace(tmp, final)
  return {**stats.to_dict(), "sources": list(sources)}


def _part_mismatch(ids_path: Path, output: Path) -> None:
  raise RuntimeError(f"{ids_path}: its ids and its .meta disagree on the number of tokens; "
                     f"delete {output / PARTS} and rerun `swahili100 tokenize`")


def _stage_chunk(meta: np.ndarray, ids: np.ndarray, local: np.ndarray, counts: dict,
                 per_source: dict, plan: dict, stage: dict) -> tuple[np.ndarray, np.ndarray]:
  """Stages one chunk's documents round-robin to their split's shards; returns each one's shard
  and source id."""
  shard_of = np.empty(len(meta), np.int64)
  src = local[meta["source"]] if len(local) else np.zeros(len(meta), np.int64)
  val = meta["validation"]
  for split, n in plan.items():
    k = np.flatnonzero(val == (split == "validation"))
    c = counts[split]
    shard_of[k] = (c["documents"] + np.arange(len(k))) % n
    c["documents"] += len(k)
    c["tokens"] += int(meta["length"][k].sum())
    c["bytes"] += int(meta["bytes"][k].sum())
    np.add.at(per_source[split], src[k], np.stack(
        [np.ones(len(k), np.int64), meta["length"][k], meta["bytes"][k]], axis=1))
  ends = np.cumsum(meta["length"])
  starts = ends - meta["length"]
  for split, n in plan.items():
    for i in range(n):
      k = np.flatnonzero((shard_of == i) & (val == (split == "validation")))
      if len(k):
        fi, fl = stage[split][i]
        fi.write(np.concatenate([ids[starts[j]:ends[j]] for j in k]).tobytes())
        fl.write(meta["length"][k].astype("<i8").tobytes())
  return shard_of, src


def _write_shard(staged: Path, path: Path, dtype: str) -> None:
  """One ArrayRecord shard from its staging files (ids, lengths), read in chunks."""
  with records.RecordWriter(str(path), dtype) as w, open(f"{staged}.ids", "rb") as fi, \
       open(f"{staged}.len", "rb") as fl:
    while True:
      lengths = np.fromfile(fl, "<i8", count=_READ_DOCS)
      if not len(lengths):
        break
      ids = np.fromfile(fi, "<u4", count=int(lengths.sum()))
      ends = np.cumsum(lengths).tolist()
      for a, b in zip([0] + ends[:-1], ends):
        w.write(ids[a:b])


def write_records(output: Path, names: list[str], part_sources: dict[str, list[str]],
                  tokenizer: str, tokenizer_sha256: str, vocab_size: int, num_shards: int,
                  num_val_shards: int, specials: special_tokens.Specials = special_tokens.OWN
                  ) -> dict:
  """Step 2: parts -> ArrayRecord shards, per-record source index and cluster sizes, manifest,
  in input order. Returns per-split counts."""
  dtype = records.dtype_for_vocab(vocab_size)
  plan = {"train": num_shards, "validation": num_val_shards}
  counts = {split: {"documents": 0, "tokens": 0, "bytes": 0} for split in plan}
  source_names = sorted({s for n in names for s in part_sources[n]})
  gid = {s: i for i, s in enumerate(source_names)}
  per_source = {split: np.zeros((len(source_names), 3), np.int64) for split in plan}
  # per split and shard: chunks of (source id, cluster size) in record order, joined shard-major
  index = {split: [([], []) for _ in range(n)] for split, n in plan.items()}
  # Pass A: each document's ids appended to its shard's staging file, in record order. Pass B:
  # one ArrayRecord shard written at a time from its staging file. An open ArrayRecord writer
  # holds ~400 bytes per record until it is closed, so writing all shards at once held ~400
  # bytes per document of the corpus (120 MB at 290k documents, 4 GB at 10M).
  staging = output / PARTS / "staging"
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  with contextlib.ExitStack() as stack:
    stage = {split: [(stack.enter_context(open(staging / f"{split}-{i}.ids", "wb")),
                      stack.enter_context(open(staging / f"{split}-{i}.len", "wb")))
                     for i in range(n)] for split, n in plan.items()}
    for name in names:
      ids_path, meta_path, _ = _part_paths(output, name)
      local = np.array([gid[s] for s in part_sources[name]], np.int64)
      with open(ids_path, "rb") as fi, open(meta_path, "rb") as fm:
        while True:
          meta = np.fromfile(fm, META, count=_READ_DOCS)
          if not len(meta):
            break
          ids = np.fromfile(fi, "<u4", count=int(meta["length"].sum()))
          if len(ids) != int(meta["length"].sum()):
            _part_mismatch(ids_path, output)
          shard_of, src = _stage_chunk(meta, ids, local, counts, per_source, plan, stage)
          for split in plan:
            in_split = meta["validation"] == (split == "validation")
            for i, (s_chunks, c_chunks) in enumerate(index[split]):
              sel = in_split & (shard_of == i)
              s_chunks.append(src[sel])
              c_chunks.append(meta["cluster"][sel])
        if fi.read(1):
          _part_mismatch(ids_path, output)
  for split, n in plan.items():
    for i in range(n):
      _write_shard(staging / f"{split}-{i}", output / records.shard_name(split, i, n), dtype)
  shutil.rmtree(staging, ignore_errors=True)
  splits = {}
  for split, n in plan.items():
    src_file, cluster_file = records.index_files(split)
    chunks = [a for s_chunks, _ in index[split] for a in s_chunks]
    records.write_array(str(output / src_file), np.concatenate(chunks).astype(
        records.source_dtype(len(source_names))))
    chunks = [a for _, c_chunks in index[split] for a in c_chunks]
    records.write_array(str(output / cluster_file), np.concatenate(chunks).astype("<u4"))
    splits[split] = records.SplitInfo(
        [records.shard_name(split, i, n) for i in range(n)], **counts[split],
        sources={s: dict(zip(("documents", "tokens", "bytes"), per_source[split][i].tolist()))
                 for i, s in enumerate(source_names) if per_source[split][i][0]},
        source_index=src_file, cluster_size=cluster_file)
  records.write_manifest(str(output), records.Manifest(
      dtype=dtype, tokenizer_file=str(tokenizer), tokenizer_sha256=tokenizer_sha256,
      vocab_size=vocab_size, special_tokens=specials.names, eos_id=specials.eos,
      pad_id=specials.pad, splits=splits,
      sources=source_names))
  return counts


def tokenize(input: str, tokenizer: str, output: str, *, validation_fraction: float, num_shards: int,
             num_val_shards: int = 1, workers: int = 1, batch_docs: int = 512,
             max_line_bytes: int = shards.DEFAULT_MAX_LINE_BYTES,
             start_method: str = "spawn") -> dict:
  """Both steps; returns the stats written to `<output>/stats.json`."""
  root, out = Path(input), Path(output)
  tok = _load_tokenizer(tokenizer)
  specials = special_tokens.of(tok, tokenizer)   # an open model's tokenizer has its own
  vocab_size = tok.get_vocab_size()
  del tok
  settings = {"tokenizer_sha256": records.sha256_file(str(tokenizer)),
              "validation_fraction": validation_fraction}
  tasks = shards.shard_tasks(root, out / PARTS, lambda p, n: (
      p, n, out, str(tokenizer), validation_fraction, batch_docs, max_line_bytes))
  names = [t.name for t in tasks]
  out.mkdir(parents=True, exist_ok=True)
  settings_path = out / PARTS / "settings.json"
  part_settings = {**settings, "meta_format": META_FORMAT}
  if settings_path.exists() and json.loads(settings_path.read_text()) != part_settings:
    raise ValueError(f"{out} holds parts encoded with other settings or by another version "
                     f"({settings_path}); use a new --output folder or delete that one")
  shards.write_json(settings_path, part_settings)
  start = time.perf_counter()
  ran = shards.run_units(tasks, encode_shard, workers=workers, start_method=start_method,
                         desc="tokenize")
  results = ran.results
  encode_secs = time.perf_counter() - start
  encoded_tokens = sum(d["notes"].get("tokens", 0) for n, d in results.items()
                       if n not in ran.skipped)
  counts = write_records(out, names, {n: d["sources"] for n, d in results.items()}, tokenizer,
                         settings["tokenizer_sha256"], vocab_size, num_shards, num_val_shards,
                         specials)
  total = shards.total_stats(root, results)
  # stats.json holds no timings or rerun counts (identical bytes after SIGKILL + rerun); run.json does
  st = {"phase": "tokenize", "input": str(root), "shards": len(names), **total.to_dict(),
        "splits": counts,
        "config": {"tokenizer": str(tokenizer), **settings, "num_shards": num_shards,
                   "num_validation_shards": num_val_shards, "batch_docs": batch_docs}}
  docs = st["docs"]
  assert docs["out"] == counts["train"]["documents"] + counts["validation"]["documents"], st
  run = {"phase": "tokenize", "shards": len(names), "shards_skipped": len(ran.skipped),
         "encode_seconds": round(encode_secs, 3), "encoded_tokens": encoded_tokens,
         "encode_mtok_per_s": round(encoded_tokens / max(encode_secs, 1e-9) / 1e6, 3)}
  shards.write_json(out / "run.json", run)
  shards.write_json(out / "stats.json", st)
  return {**st, "run": run}


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  z = cfg.tokenize
  p.add_argument("--tokenizer", required=True, help="tokenizer JSON from train-tokenizer")
  p.add_argument("--validation-fraction", type=float, default=None,
                 help=f"documents (by id hash) in validation (default {z.validation_fraction})")
  p.add_argument("--num-shards", type=int, default=None, help=f"train shards (default {z.num_shards})")
  p.add_argument("--num-validation-shards", type=int, default=None,
                 help=f"default {z.num_validation_shards}")
  p.add_argument("--batch-docs", type=int, default=None, help=f"default {z.batch_docs}")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "tokenize", __doc__, "tokenize", _flags)
  z, r = cfg.tokenize, cfg.runner
  try:
    st = tokenize(args.input, args.tokenizer, args.output,
                  validation_fraction=z.validation_fraction, num_shards=z.num_shards,
                  num_val_shards=z.num_validation_shards, workers=r.workers,
                  batch_docs=z.batch_docs, max_line_bytes=r.max_line_bytes,
                  start_method=z.start_method)
  except ValueError as e:   # a tokenizer without an end-of-text token, a reused --output
    print(f"tokenize: error: {e}", file=sys.stderr)
    return 2
  s, d, r = st["splits"], st["docs"], st["run"]
  print(f"tokenize: {d['in']} docs in -> train {s['train']['documents']} docs / "
        f"{s['train']['tokens']} tokens, validation {s['validation']['documents']} docs / "
        f"{s['validation']['tokens']} tokens, dropped {d['dropped']}; "
        f"encoded {r['encoded_tokens']} tokens at {r['encode_mtok_per_s']:.2f} Mtok/s "
        f"({r['shards_skipped']} shards already done) -> {args.output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
