"""Phase 6: encode filtered shards into token records (design.md §2, swahili100/records.py).

  swahili100 tokenize --input data/filtered --tokenizer tokenizer/swahili_bpe.json \
      --output data/records [--validation-fraction 0.01] [--num-shards 8] [--workers 2]

Two steps, both restartable:
1. encode (parallel over input shards, `--workers N` processes): each input shard's documents
   are encoded with `Tokenizer.encode_batch_fast` in batches of `--batch-docs`, the end-of-text
   id appended, and streamed to `parts/<shard>.ids` (uint32) and `.meta` (length, split, text
   bytes per document), then a marker `parts/<shard>.done` with the shard's stats. Shards with a marker are skipped on rerun.
   A document goes to validation when the BLAKE2b hash of its id falls under
   `--validation-fraction` (the hash train-tokenizer holds out by), so the split does not depend
   on `--workers` or shard order. Text that spells a special token is encoded as plain text.
2. write (sequential, in input-shard order): train documents round-robin over `--num-shards`
   ArrayRecord shards, validation over `--num-validation-shards`; every shard written to a .tmp
   and renamed; `manifest.json` (tokenizer SHA-256, dtype, counts) and `stats.json` last.
   Outputs are byte-identical for any `--workers` and after a SIGKILL + rerun.

Accounting (stats.json, no timings so a rerun writes identical bytes; run.json has the timing and
skipped shards): docs in == train + validation + dropped (bad lines by reason, `empty`
for documents with no text); dropped documents go to `removed/<shard>` with their reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

from configs import data as data_config
from data_pipeline import shards
from data_pipeline.train_tokenizer import id_unit
from swahili100 import records, special_tokens

PARTS = "parts"


def _load_tokenizer(path: str):
  import tokenizers
  tok = tokenizers.Tokenizer.from_file(path)
  tok.encode_special_tokens = True   # "<|endoftext|>" inside a document is text, not EOS
  return tok


META = np.dtype([("length", "<i8"), ("validation", "?"), ("bytes", "<i8")])  # one per document
_READ_DOCS = 1 << 16   # documents per chunk when merging parts (bounded memory)


def _part_paths(output: Path, name: str) -> tuple[Path, Path, Path]:
  """(ids file, per-document META file, marker) of one input shard's encoded part."""
  base = output / PARTS / name
  return tuple(base.with_name(base.name + ext) for ext in (".ids", ".meta", ".done"))


def encode_shard(args) -> tuple[str, dict]:
  """Worker: one input shard -> parts/<name>.{ids,meta} + removed/<name> + marker (its stats).

  Streams: each batch's ids (uint32 little-endian, EOS appended) and META rows are appended to
  .tmp files, renamed when the shard is complete, so memory is one batch whatever the shard size.
  """
  path, name, output, tokenizer, val_fraction, batch_docs, max_line_bytes, index = args
  tok = _load_tokenizer(tokenizer)
  stats = shards.Stats()
  kill = shards._maybe_test_kill(index)  # noqa: SLF001 (shared SIGKILL test hook)
  ids_path, meta_path, done = _part_paths(output, name)
  ids_path.parent.mkdir(parents=True, exist_ok=True)
  tmps = [p.with_name(p.name + ".tmp") for p in (ids_path, meta_path)]
  eos = np.array([special_tokens.EOS_ID], "<u4")

  with open(tmps[0], "wb") as fi, open(tmps[1], "wb") as fm, \
       shards.ShardWriter(output / shards.REMOVED_DIR / name) as rw:

    def flush(batch: list[dict]) -> None:
      meta = np.zeros(len(batch), META)
      chunks = []
      for k, (doc, enc) in enumerate(zip(batch, tok.encode_batch_fast([d["text"] for d in batch]))):
        chunks += [np.asarray(enc.ids, "<u4"), eos]
        b = shards.text_bytes(doc)
        meta[k] = (len(enc.ids) + 1, id_unit(doc["id"]) < val_fraction, b)
        stats.docs_out += 1
        stats.bytes_out += b
      stats.note("tokens", int(meta["length"].sum()))
      fi.write(np.concatenate(chunks).tobytes())
      fm.write(meta.tobytes())

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
        if kill:
          os.kill(os.getpid(), 9)
    if batch:
      flush(batch)
  for tmp, final in zip(tmps, (ids_path, meta_path)):
    os.replace(tmp, final)
  d = stats.to_dict()
  shards.write_json(done, d)
  return name, d


def write_records(output: Path, names: list[str], tokenizer: str, tokenizer_sha256: str,
                  vocab_size: int, num_shards: int, num_val_shards: int) -> dict:
  """Step 2: parts -> ArrayRecord shards + manifest, in input order. Returns per-split counts."""
  dtype = records.dtype_for_vocab(vocab_size)
  plan = {"train": num_shards, "validation": num_val_shards}
  counts = {split: {"documents": 0, "tokens": 0, "bytes": 0} for split in plan}
  # every shard renamed into place on success, its .tmp removed if anything fails
  with contextlib.ExitStack() as stack:
    writers = {split: [stack.enter_context(
        records.ShardWriter(str(output / records.shard_name(split, i, n)), dtype))
        for i in range(n)] for split, n in plan.items()}
    for name in names:
      ids_path, meta_path, _ = _part_paths(output, name)
      ids = np.memmap(ids_path, "<u4", mode="r") if ids_path.stat().st_size else np.zeros(0, "<u4")
      pos = 0
      with open(meta_path, "rb") as fm:
        while True:
          meta = np.fromfile(fm, META, count=_READ_DOCS)
          if not len(meta):
            break
          for n, val, b in meta.tolist():
            split = "validation" if val else "train"
            c = counts[split]
            writers[split][c["documents"] % plan[split]].write(ids[pos:pos + n])
            pos += n
            c["documents"] += 1
            c["tokens"] += n
            c["bytes"] += b
      if pos != len(ids):
        raise RuntimeError(f"{ids_path}: {len(ids)} ids but its .meta lists {pos}; delete "
                           f"{output / PARTS} and rerun `swahili100 tokenize`")
      del ids
  splits = {split: records.SplitInfo([records.shard_name(split, i, n) for i in range(n)],
                                     **counts[split]) for split, n in plan.items()}
  records.write_manifest(str(output), records.Manifest(
      dtype=dtype, tokenizer_file=str(tokenizer), tokenizer_sha256=tokenizer_sha256,
      vocab_size=vocab_size, special_tokens=dict(special_tokens.IDS),
      eos_id=special_tokens.EOS_ID, pad_id=special_tokens.PAD_ID, splits=splits))
  return counts


def tokenize(input: str, tokenizer: str, output: str, *, validation_fraction: float, num_shards: int,
             num_val_shards: int = 1, workers: int = 1, batch_docs: int = 512,
             max_line_bytes: int = shards.DEFAULT_MAX_LINE_BYTES) -> dict:
  """Both steps; returns the stats written to `<output>/stats.json`."""
  root, out = Path(input), Path(output)
  tok = _load_tokenizer(tokenizer)
  got = [tok.id_to_token(i) for i in range(len(special_tokens.ALL))]
  if got != list(special_tokens.ALL):
    raise ValueError(f"{tokenizer}: ids 0..{len(got) - 1} are {got}, expected the special tokens "
                     f"{list(special_tokens.ALL)}; train it with `swahili100 train-tokenizer`")
  vocab_size = tok.get_vocab_size()
  del tok
  paths = shards.list_shards(root)
  if not paths:
    raise FileNotFoundError(f"no *.jsonl / *.jsonl.gz shards under {root}")
  names = [shards.shard_name(p, root) for p in paths]
  settings = {"tokenizer_sha256": records.sha256_file(str(tokenizer)),
              "validation_fraction": validation_fraction}
  out.mkdir(parents=True, exist_ok=True)
  settings_path = out / PARTS / "settings.json"
  if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
    raise ValueError(f"{out} holds parts encoded with other settings ({settings_path}); use a new "
                     "--output folder or delete that one")
  shards.write_json(settings_path, settings)
  results, todo = {}, []
  for i, (p, n) in enumerate(zip(paths, names)):
    _, _, done = _part_paths(out, n)
    if done.exists():
      results[n] = json.loads(done.read_text())
    else:
      todo.append((p, n, out, str(tokenizer), validation_fraction, batch_docs, max_line_bytes, i))
  skipped = len(results)
  from tqdm import tqdm
  bar = tqdm(total=len(paths), initial=skipped, desc="tokenize", unit="shard", file=sys.stderr,
             disable=None)
  start = time.perf_counter()
  if workers > 1 and len(todo) > 1:
    # spawn: a forked child of a process that already ran tokenizers is left single-threaded;
    # a killed worker raises BrokenProcessPool (finished shards keep their markers).
    from concurrent.futures import ProcessPoolExecutor, as_completed
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as ex:
      for f in as_completed([ex.submit(encode_shard, t) for t in todo]):
        n, d = f.result()
        results[n] = d
        bar.update(1)
  else:
    for t in todo:
      n, d = encode_shard(t)
      results[n] = d
      bar.update(1)
  bar.close()
  encode_secs = time.perf_counter() - start
  encoded_tokens = sum(results[t[1]]["notes"].get("tokens", 0) for t in todo)
  counts = write_records(out, names, tokenizer, settings["tokenizer_sha256"], vocab_size,
                         num_shards, num_val_shards)
  total = shards.Stats()
  for n in names:
    total.merge(shards.Stats.from_dict(results[n]))
  ignored = shards.ignored_files(root)
  if ignored:   # files that are not shards at all: counted and warned, not documents lost
    total.note("ignored_files", len(ignored))
    total.warn(f"{root}: {len(ignored)} file(s) are not *.jsonl(.gz) shards and were not read, "
               f"e.g. {ignored[0].relative_to(root)}")
  # stats.json holds no timings or rerun counts (identical bytes after SIGKILL + rerun); run.json does
  st = {"phase": "tokenize", "input": str(root), "shards": len(names), **total.to_dict(),
        "splits": counts,
        "config": {"tokenizer": str(tokenizer), **settings, "num_shards": num_shards,
                   "num_validation_shards": num_val_shards, "batch_docs": batch_docs}}
  docs = st["docs"]
  assert docs["out"] == counts["train"]["documents"] + counts["validation"]["documents"], st
  run = {"phase": "tokenize", "shards": len(names), "shards_skipped": skipped,
         "encode_seconds": round(encode_secs, 3), "encoded_tokens": encoded_tokens,
         "encode_mtok_per_s": round(encoded_tokens / max(encode_secs, 1e-9) / 1e6, 3)}
  shards.write_json(out / "run.json", run)
  shards.write_json(out / "stats.json", st)
  return {**st, "run": run}


def main(argv: list[str] | None = None) -> int:
  cfg = data_config.get_config()
  z = cfg.tokenize
  p = argparse.ArgumentParser(prog="swahili100 tokenize", description=__doc__.split("\n")[0],
                              epilog="Also --config.tokenize.<key>=<value> (configs/data.py).")
  shards.add_common_args(p)
  p.add_argument("--tokenizer", required=True, help="tokenizer JSON from train-tokenizer")
  p.add_argument("--validation-fraction", type=float, default=None,
                 help=f"documents (by id hash) in validation (default {z.validation_fraction})")
  p.add_argument("--num-shards", type=int, default=None, help=f"train shards (default {z.num_shards})")
  p.add_argument("--num-validation-shards", type=int, default=1)
  p.add_argument("--batch-docs", type=int, default=None, help=f"default {z.batch_docs}")
  args = shards.parse_args(p, argv, cfg, "tokenize", ("validation_fraction", "num_shards", "batch_docs"))
  st = tokenize(args.input, args.tokenizer, args.output, validation_fraction=z.validation_fraction,
                num_shards=z.num_shards, num_val_shards=args.num_validation_shards,
                workers=args.workers, batch_docs=z.batch_docs, max_line_bytes=args.max_line_bytes)
  s, d, r = st["splits"], st["docs"], st["run"]
  print(f"tokenize: {d['in']} docs in -> train {s['train']['documents']} docs / "
        f"{s['train']['tokens']} tokens, validation {s['validation']['documents']} docs / "
        f"{s['validation']['tokens']} tokens, dropped {d['dropped']}; "
        f"encoded {r['encoded_tokens']} tokens at {r['encode_mtok_per_s']:.2f} Mtok/s "
        f"({r['shards_skipped']} shards already done) -> {args.output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
