"""Phase 5: train the byte-level BPE tokenizer, streaming from the filtered shards.

  swahili100 train-tokenizer --input data/filtered --output tokenizer [--vocab-size 16384]

Hugging Face `tokenizers` byte-level BPE: NFC normalizer; the GPT-2 byte-level pre-tokenizer
(`--pretokenizer swahili` keeps apostrophe words like ng'ombe whole and groups digits by three; it
is measured in docs/RESEARCH.md but GGUF export maps only gpt2); the named special tokens of `swahili100/special_tokens.py` first, so
`<|endoftext|>` is id 0. Documents whose id hash falls under `--heldout-fraction` (the same hash
`tokenize` uses for its validation split) are held out of training and measured.

  swahili100 train-tokenizer --input data/filtered --output tokenizer/smollm2-sw \
      --extend runs/smollm2/tokenizer.json --add 8000     # extend an open model's vocabulary

`--extend` appends up to `--add` Swahili tokens to a byte-level BPE, keeping every base id
(data_pipeline/extend_vocab.py; `swahili100 import --extend-vocab` calls it and initialises the
new embeddings).

  swahili100 train-tokenizer --input data/filtered --output fertility \
      --measure tokenizer/swahili_bpe.json --measure runs/smollm2/tokenizer.json   # no training

`--measure` (repeatable) measures any tokenizer JSON on the same held-out documents instead of
training: bytes per token and tokens per word, written to `<output>/fertility.json`.

Writes `<output>/swahili_bpe.json` and `<output>/report.json` (bytes per token and tokens per word
on held-out documents, round-trip exactness decode(encode(x)) == x with every failure listed,
training time and MB/s), and `stats.json` (docs in == train + heldout + dropped). A rerun with
the same input and settings finds the report and skips (`--force` retrains).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import unicodedata
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm import tqdm

from data_pipeline import extend_vocab, shards
from swahili100 import records, special_tokens

TOKENIZER_FILE = "swahili_bpe.json"
REPORT_FILE = "report.json"
# Letters with inner apostrophes stay one piece (ng'ombe, wa'Kenya); digits in groups of <= 3.
SWAHILI_SPLIT = (r" ?\p{L}+(?:'\p{L}+)*| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")


def id_unit(doc_id: str) -> float:
  """A document id's deterministic position in [0, 1) (BLAKE2b), for held-out/validation splits."""
  h = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
  return int.from_bytes(h, "little") / 2.0**64


def build(vocab_size: int, min_frequency: int, pretokenizer: str = "gpt2"):
  """(untrained tokenizer, trainer) of the project's byte-level BPE."""
  tok = Tokenizer(models.BPE())
  tok.normalizer = normalizers.NFC()
  if pretokenizer == "gpt2":
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  elif pretokenizer == "swahili":
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SWAHILI_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  else:
    raise ValueError(f"--pretokenizer {pretokenizer!r}: expected swahili | gpt2")
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
      special_tokens=list(special_tokens.ALL),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  return tok, trainer


def measure(tok, docs: list[dict]) -> dict:
  """Bytes per token, tokens per word and round-trip exactness over `docs`."""
  tok.encode_special_tokens = True   # text that spells a special token is ordinary text
  texts = [d["text"] for d in docs]
  encs = tok.encode_batch_fast(texts) if texts else []
  ntok = sum(len(e.ids) for e in encs)
  nbytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
  nwords = sum(len(t.split()) for t in texts)
  decoded = tok.decode_batch([e.ids for e in encs], skip_special_tokens=False) if encs else []
  failures = []
  for d, text, out in zip(docs, texts, decoded):
    if out != text:
      why = ("input not NFC" if out == unicodedata.normalize("NFC", text) else "decode differs")
      at = next((i for i, (a, b) in enumerate(zip(text, out)) if a != b), min(len(text), len(out)))
      failures.append({"id": d["id"], "why": why, "at": at, "text": text[max(0, at - 20):at + 20]})
  return {"docs": len(texts), "bytes": nbytes, "tokens": ntok, "words": nwords,
          "bytes_per_token": nbytes / max(ntok, 1), "tokens_per_word": ntok / max(nwords, 1),
          "round_trip_exact": len(texts) - len(failures), "round_trip_failures": failures[:100],
          "round_trip_failure_count": len(failures)}


def heldout_docs(input: str, heldout_fraction: float, max_docs: int,
                 max_line_bytes: int = shards.DEFAULT_MAX_LINE_BYTES) -> list[dict]:
  """The documents `train` holds out of training (and `tokenize` puts in validation)."""
  out = []
  for _, doc in shards.iter_docs(Path(input), shards.Stats(), max_line_bytes=max_line_bytes):
    if doc["text"].strip() and id_unit(doc["id"]) < heldout_fraction:
      out.append({"id": doc["id"], "text": doc["text"]})
      if len(out) >= max_docs:
        break
  return out


def fertility(tokenizers_: list[str], docs: list[dict]) -> dict:
  """{tokenizer path: its `measure` on `docs`} for any tokenizers JSON (an open model's too)."""
  out = {}
  for path in tokenizers_:
    m = measure(Tokenizer.from_file(path), docs)
    out[path] = {k: v for k, v in m.items() if k != "round_trip_failures"}
    out[path]["vocab_size"] = Tokenizer.from_file(path).get_vocab_size()
  return out


def _fingerprint(input: Path, settings: dict) -> str:
  h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  for p in shards.list_shards(input):
    st = p.stat()
    h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
  return h.hexdigest()


def _finish(tok, base: dict | None, add: int, vocab_size: int, heldout: list[dict],
            extend: str | None):
  """(the tokenizer to save, its special tokens, the extension's record): the trained BPE, or
  the base with up to `add` of its merges appended (`extend`)."""
  if base is None:
    got = [tok.id_to_token(i) for i in range(len(special_tokens.ALL))]
    if got != list(special_tokens.ALL):   # the contract alignment/export rely on
      raise RuntimeError(f"special tokens came out as {got}, expected {list(special_tokens.ALL)}")
    return tok, dict(special_tokens.IDS), {}
  learned = json.loads(tok.to_str())["model"]["merges"]
  ext, extension = extend_vocab.extend(base, learned, add)
  extension["trainer_vocab_size"] = vocab_size
  extension["base_heldout"] = measure(Tokenizer.from_file(str(extend)), heldout)
  specials = {t["content"]: t["id"] for t in base.get("added_tokens", []) if t.get("special")}
  return Tokenizer.from_str(json.dumps(ext)), specials, extension


def train(input: str, output: str, *, vocab_size: int, min_frequency: int, heldout_fraction: float,
          max_heldout_docs: int, pretokenizer: str = "gpt2", max_line_bytes: int =
          shards.DEFAULT_MAX_LINE_BYTES, force: bool = False, extend: str | None = None,
          add: int = 0) -> dict:
  """Trains, saves and measures; returns the report. With `extend` (a base tokenizer JSON), the
  BPE learns on the base's pieces and up to `add` of its tokens are appended to the base
  (data_pipeline/extend_vocab.py); `vocab_size` is then the trainer's, not the output's."""
  input_path, out = Path(input), Path(output)
  settings = {"vocab_size": vocab_size, "min_frequency": min_frequency, "pretokenizer": pretokenizer,
              "heldout_fraction": heldout_fraction, "max_heldout_docs": max_heldout_docs}
  base = None
  if extend:
    base = json.loads(Path(extend).read_text(encoding="utf-8"))
    extend_vocab.check_base(base, extend)
    settings.update(extend=str(extend), extend_sha256=records.sha256_file(str(extend)), add=add)
  fingerprint = _fingerprint(input_path, settings)
  report_path = out / REPORT_FILE
  if not force and report_path.exists() and (out / TOKENIZER_FILE).exists():
    old = json.loads(report_path.read_text())
    if old.get("fingerprint") == fingerprint:
      print(f"train-tokenizer: {out / TOKENIZER_FILE} is up to date (same input and settings); "
            "skipped. Pass --force to retrain.", file=sys.stderr)
      return old
  tok, trainer = build(vocab_size, min_frequency, pretokenizer)
  if base is not None:   # learn on the pieces the base's normalizer and pre-tokenizer make
    base_tok = Tokenizer.from_str(json.dumps(base))
    tok.pre_tokenizer = base_tok.pre_tokenizer
    if base_tok.normalizer is not None:
      tok.normalizer = base_tok.normalizer
  stats = shards.Stats()
  heldout: list[dict] = []
  counts = {"train_docs": 0, "train_bytes": 0, "heldout_docs": 0, "empty": 0}

  def texts():
    bar = tqdm(desc="train-tokenizer", unit="doc", file=sys.stderr, disable=None)
    for _, doc in shards.iter_docs(input_path, stats, max_line_bytes=max_line_bytes):
      bar.update(1)
      text = doc["text"]
      nbytes = shards.text_bytes(doc)
      if not text.strip():
        counts["empty"] += 1
        stats.drop("empty", nbytes)
        continue
      stats.bytes_out += nbytes
      stats.docs_out += 1
      if id_unit(doc["id"]) < heldout_fraction:
        counts["heldout_docs"] += 1
        if len(heldout) < max_heldout_docs:
          heldout.append({"id": doc["id"], "text": text})
        continue
      counts["train_docs"] += 1
      counts["train_bytes"] += nbytes
      yield text
    bar.close()

  start = time.perf_counter()
  tok.train_from_iterator(texts(), trainer)
  secs = time.perf_counter() - start
  if counts["train_docs"] == 0:
    raise ValueError(f"no training documents under {input_path}: every document was empty or "
                     f"held out (--heldout-fraction {heldout_fraction})")
  tok, specials, extension = _finish(tok, base, add, vocab_size, heldout, extend)
  out.mkdir(parents=True, exist_ok=True)
  tmp = out / (TOKENIZER_FILE + ".tmp")
  tok.save(str(tmp))
  os.replace(tmp, out / TOKENIZER_FILE)
  report = {
      "tokenizer": str(out / TOKENIZER_FILE), "sha256": records.sha256_file(str(out / TOKENIZER_FILE)),
      **settings, "vocab_size": tok.get_vocab_size(), "special_tokens": specials, **counts,
      "train_seconds": round(secs, 3),
      "train_mb_per_s": round(counts["train_bytes"] / 1e6 / max(secs, 1e-9), 3),
      "heldout": measure(tok, heldout), "fingerprint": fingerprint,
      **({"extension": extension} if extension else {})}
  st = {"phase": "train-tokenizer", "input": str(input_path), **stats.to_dict(), **counts,
        "config": settings}
  shards.write_json(out / "stats.json", st)
  shards.write_json(report_path, report)   # last: its presence means the phase completed
  return report


def _flags(p: argparse.ArgumentParser, cfg) -> None:
  t = cfg.tokenizer
  p.add_argument("--vocab-size", type=int, default=None, help=f"default {t.vocab_size}")
  p.add_argument("--min-frequency", type=int, default=None, help=f"default {t.min_frequency}")
  p.add_argument("--heldout-fraction", type=float, default=None, help=f"default {t.heldout_fraction}")
  p.add_argument("--pretokenizer", choices=("swahili", "gpt2"), default=None)
  p.add_argument("--workers", dest="threads", type=int, default=None,
                 help=f"training threads (default {t.threads}: all cores)")
  p.add_argument("--force", action="store_true", help="retrain even if the report is up to date")
  p.add_argument("--extend", default=None, metavar="BASE_TOKENIZER_JSON",
                 help="append up to --add learned Swahili tokens to this byte-level BPE (an open "
                 "model's tokenizer.json); base ids are kept")
  p.add_argument("--add", type=int, default=None, help="tokens to add with --extend")
  p.add_argument("--measure", action="append", default=None, metavar="TOKENIZER_JSON",
                 help="measure this tokenizer on the held-out documents instead of training "
                 "(repeatable); writes OUTPUT/fertility.json")


def main(argv: list[str] | None = None) -> int:
  args, cfg = shards.parse_cli(argv, "train-tokenizer", __doc__, "tokenizer", _flags,
                               common=("input", "output", "max_line_bytes"))
  t = cfg.tokenizer
  if args.measure:
    missing = [m for m in args.measure if not os.path.exists(m)]
    if missing:
      print(f"train-tokenizer: --measure {missing[0]} not found", file=sys.stderr)
      return 2
    docs = heldout_docs(args.input, t.heldout_fraction, t.max_heldout_docs,
                        cfg.runner.max_line_bytes)
    result = {"input": args.input, "heldout_docs": len(docs),
              "tokenizers": fertility(args.measure, docs)}
    Path(args.output).mkdir(parents=True, exist_ok=True)
    shards.write_json(Path(args.output) / "fertility.json", result)
    for path, m in result["tokenizers"].items():
      print(f"{path}: vocab {m['vocab_size']}, {m['bytes_per_token']:.3f} bytes/token, "
            f"{m['tokens_per_word']:.3f} tokens/word on {m['docs']} held-out docs")
    return 0
  if t.threads > 0:   # the Rust trainer's thread pool reads it when it starts
    os.environ["RAYON_NUM_THREADS"] = str(t.threads)
  vocab_size = t.vocab_size
  if args.extend:
    if not args.add or args.add < 1:
      print("train-tokenizer: --extend needs --add N (N > 0 tokens to add)", file=sys.stderr)
      return 2
    if not os.path.exists(args.extend):
      print(f"train-tokenizer: --extend {args.extend} not found", file=sys.stderr)
      return 2
    # Part of what the trainer learns is already in the base: learn 3x what is asked and at least
    # the base's size plus twice it (a Swahili base shares most of its early merges).
    try:
      base = json.loads(Path(args.extend).read_text(encoding="utf-8"))
      extend_vocab.check_base(base, args.extend)
    except (ValueError, extend_vocab.ExtendError) as e:   # JSONDecodeError is a ValueError
      print(f"train-tokenizer: error: --extend {args.extend}: {e}", file=sys.stderr)
      return 2
    base_size = Tokenizer.from_str(json.dumps(base)).get_vocab_size()
    vocab_size = args.vocab_size or max(len(special_tokens.ALL) + 256 + 3 * args.add,
                                        base_size + 2 * args.add)
  try:
    r = train(args.input, args.output, vocab_size=vocab_size, min_frequency=t.min_frequency,
              heldout_fraction=t.heldout_fraction, max_heldout_docs=t.max_heldout_docs,
              pretokenizer=t.pretokenizer, max_line_bytes=cfg.runner.max_line_bytes,
              force=args.force, extend=args.extend, add=args.add or 0)
  except extend_vocab.ExtendError as e:
    print(f"train-tokenizer: error: {e}", file=sys.stderr)
    return 2
  if "extension" in r:
    e, b = r["extension"], r["extension"]["base_heldout"]
    print(f"train-tokenizer: added {e['added']} of {e['requested']} tokens to {args.extend} "
          f"(ids {e['first_new_id']}..{e['first_new_id'] + e['added'] - 1}); held out: "
          f"{b['bytes_per_token']:.2f} -> {r['heldout']['bytes_per_token']:.2f} bytes/token",
          file=sys.stderr)
  h = r["heldout"]
  print(f"train-tokenizer: vocab {r['vocab_size']} from {r['train_docs']} docs in "
        f"{r['train_seconds']:.1f}s ({r['train_mb_per_s']:.2f} MB/s); held out {h['docs']} docs: "
        f"{h['bytes_per_token']:.2f} bytes/token, {h['tokens_per_word']:.2f} tokens/word, "
        f"round trip {h['round_trip_exact']}/{h['docs']} exact -> {r['tokenizer']}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
