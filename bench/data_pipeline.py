"""Data-pipeline benchmark: every text phase on ../shared/data/sw-news, with peer ratios.

  flock /tmp/swahili100-bench.lock python bench/data_pipeline.py [--workers 2] [--max-shards N]

Runs clean -> dedup -> filter -> train-tokenizer -> tokenize in a temporary folder (each phase's
`main()` in this process, exactly as the CLI runs it) and prints per-phase MB/s and docs/s of
its input. Peers, measured in the same run on the same data so that machine load cancels out:
  dedup           datasketch `MinHash.bulk` (word 5-gram shingles, same num_perm) + `MinHashLSH`
                  insert/query over the cleaned documents, texts already in memory
  train-tokenizer plain `tokenizers` BPE training (same model, trainer and vocabulary) from an
                  in-memory list of the same training documents
  tokenize        raw `Tokenizer.encode_batch` (and `encode_batch_fast`) over the filtered texts
                  in memory; the phase includes reading, splitting and writing records
A ratio > 1 means the phase beats its peer. Expected time on a 2-core CPU: ~5 minutes.
"""

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SW_NEWS = REPO.parent / "shared" / "data" / "sw-news"


def _timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def _texts(folder) -> list[dict]:
  from data_pipeline import shards
  return [doc for _, doc in shards.iter_docs(folder)]


def peer_dedup(docs: list[dict], num_perm: int, shingle: int, threshold: float) -> float:
  from datasketch import MinHash, MinHashLSH
  word = re.compile(r"\w+")
  start = time.perf_counter()
  lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
  for i in range(0, len(docs), 512):
    sets = []
    for d in docs[i:i + 512]:
      w = word.findall(d["text"].lower())
      sets.append({" ".join(w[j:j + shingle]).encode() for j in range(max(1, len(w) - shingle + 1))})
    for k, m in enumerate(MinHash.bulk(sets, num_perm=num_perm)):
      if not lsh.query(m):
        lsh.insert(str(i + k), m)
  return time.perf_counter() - start


def peer_train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int, pretok: str) -> float:
  from data_pipeline import train_tokenizer as tt
  tok, trainer = tt.build(vocab_size, min_frequency, pretok)
  start = time.perf_counter()
  tok.train_from_iterator(texts, trainer)
  return time.perf_counter() - start


def peer_encode(tok_path: str, texts: list[str]) -> dict:
  import tokenizers
  tok = tokenizers.Tokenizer.from_file(tok_path)
  out = {}
  for name in ("encode_batch", "encode_batch_fast"):
    fn = getattr(tok, name)
    start, ntok = time.perf_counter(), 0
    for i in range(0, len(texts), 512):
      ntok += sum(len(e.ids) for e in fn(texts[i:i + 512]))
    out[name] = (ntok, time.perf_counter() - start)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--input", default=str(SW_NEWS))
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--max-shards", type=int, default=0, help="use only the first N input shards")
  p.add_argument("--vocab-size", type=int, default=16384)
  p.add_argument("--json", help="also write the figures here")
  args = p.parse_args(argv)
  src = Path(args.input)
  if not src.exists():
    print(f"bench: {src} not found (needs ../shared/data/sw-news)", file=sys.stderr)
    return 1
  from configs import pipeline as pipeline_config
  from data_pipeline import clean, dedup, filter as filt, shards, tokenize, train_tokenizer as tt
  cfg = pipeline_config.get_config()
  with tempfile.TemporaryDirectory(prefix="swahili100-bench-") as tmp:
    tmp = Path(tmp)
    if args.max_shards:
      (tmp / "raw").mkdir()
      for s in shards.list_shards(src)[: args.max_shards]:
        (tmp / "raw" / s.name).symlink_to(s)
      src = tmp / "raw"
    w = ["--workers", str(args.workers)]
    d = lambda name: str(tmp / name)  # noqa: E731
    phases = [
        ("clean", clean.main, ["--input", str(src), "--output", d("cleaned"), *w]),
        ("dedup", dedup.main, ["--input", d("cleaned"), "--output", d("deduped"), *w]),
        ("filter", filt.main, ["--input", d("deduped"), "--output", d("filtered"), *w]),
        ("train-tokenizer", tt.main, ["--input", d("filtered"), "--output", d("tokenizer"),
                                      "--vocab-size", str(args.vocab_size)]),
        ("tokenize", tokenize.main, ["--input", d("filtered"), "--tokenizer",
                                     d("tokenizer/swahili_bpe.json"), "--output", d("records"),
                                     "--num-shards", "8", *w]),
    ]
    rows = {}
    for name, fn, a in phases:
      _, secs = _timed(fn, a)
      out = Path(a[a.index("--output") + 1])
      st = json.loads((out / "stats.json").read_text())
      rows[name] = {"seconds": secs, "docs_in": st["docs"]["in"], "bytes_in": st["bytes"]["in"],
                    "docs_out": st["docs"]["out"], "dropped": st["docs"]["dropped"]}
      print(f"{name}: {secs:.1f}s", file=sys.stderr, flush=True)
    cleaned = _texts(d("cleaned"))
    filtered = _texts(d("filtered"))
    peers = {}
    peers["dedup"] = peer_dedup(cleaned, cfg.dedup.num_perm, cfg.dedup.shingle, cfg.dedup.threshold)
    report = json.loads((tmp / "tokenizer" / tt.REPORT_FILE).read_text())
    t = cfg.tokenizer
    train_texts = [x["text"] for x in filtered if tt.id_unit(x["id"]) >= t.heldout_fraction]
    peers["train-tokenizer"] = peer_train_tokenizer(train_texts, args.vocab_size, t.min_frequency,
                                                    t.pretokenizer)
    enc = peer_encode(d("tokenizer/swahili_bpe.json"), [x["text"] for x in filtered])
    st = json.loads((tmp / "records" / "stats.json").read_text())
    ntok = sum(s["tokens"] for s in st["splits"].values())
  print(f"\nsw-news: {rows['clean']['docs_in']} docs, {rows['clean']['bytes_in'] / 1e6:.1f} MB; "
        f"--workers {args.workers}; peer ratio = peer time / phase time (> 1: phase faster)")
  print("| phase | seconds | MB/s | docs/s | docs out | peer | peer ratio |")
  print("|---|---|---|---|---|---|---|")
  peer_desc = {
      "dedup": (f"datasketch MinHash.bulk+LSH {peers['dedup']:.1f}s", peers["dedup"]),
      "train-tokenizer": (f"plain tokenizers BPE {peers['train-tokenizer']:.1f}s",
                          peers["train-tokenizer"]),
  }
  raw_ntok, raw_secs = enc["encode_batch"]
  fast_ntok, fast_secs = enc["encode_batch_fast"]
  # tokenize: compare throughput in tokens/s (the raw peers encode the same documents)
  tok_secs = rows["tokenize"]["seconds"]
  for name, r in rows.items():
    desc, ratio = "", ""
    if name in peer_desc:
      desc, ps = peer_desc[name]
      ratio = f"{ps / r['seconds']:.2f}"
    if name == "tokenize":
      desc = (f"encode_batch {raw_ntok / raw_secs / 1e6:.2f} Mtok/s; phase "
              f"{ntok / tok_secs / 1e6:.2f} Mtok/s")
      ratio = f"{(ntok / tok_secs) / (raw_ntok / raw_secs):.2f}"
    print(f"| {name} | {r['seconds']:.1f} | {r['bytes_in'] / 1e6 / r['seconds']:.2f} | "
          f"{r['docs_in'] / r['seconds']:.0f} | {r['docs_out']} | {desc} | {ratio} |")
  print(f"\ntokenize vs encode_batch_fast ({fast_ntok / fast_secs / 1e6:.2f} Mtok/s): "
        f"{(ntok / tok_secs) / (fast_ntok / fast_secs):.2f}")
  h = report["heldout"]
  print(f"tokenizer {report['vocab_size']}: {h['bytes_per_token']:.3f} bytes/token, "
        f"{h['tokens_per_word']:.3f} tokens/word, round trip {h['round_trip_exact']}/{h['docs']}, "
        f"trained in {report['train_seconds']:.1f}s ({report['train_mb_per_s']:.2f} MB/s)")
  print(f"filter dropped: {rows['filter']['dropped']}")
  if args.json:
    Path(args.json).write_text(json.dumps({"rows": rows, "peers": peers, "encode": enc,
                                           "tokenizer": report}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
