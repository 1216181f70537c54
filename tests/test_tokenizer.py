"""Phases 5-6: train-tokenizer (specials, NFC, round trip, report) and tokenize (records contract)."""

import json
import subprocess
import sys

import pytest
import tokenizers

import fault_hooks
from conftest import REPO, SENTENCES, documents, tiny_config
from data_pipeline import tokenize as tkz
from data_pipeline import train_tokenizer as tt
from swahili100 import loader, records, special_tokens

APOSTROPHES = ("Ng'ombe wa mzee Juma walikula nyasi ng'ambo ya mto. "
               "Tunaenda nyumbani kwa mama Ng'wanza leo jioni.")


def write_shards(folder, n_shards=3, n_docs=90, extra=()):
  folder.mkdir(parents=True, exist_ok=True)
  docs = [{"id": f"doc-{i}", "text": t, "source": "test"}
          for i, t in enumerate(documents(n_docs) + [APOSTROPHES] * 3)]
  docs += list(extra)
  for s in range(n_shards):
    with open(folder / f"part-{s:05d}.jsonl", "w", encoding="utf-8") as f:
      for d in docs[s::n_shards]:
        f.write((json.dumps(d, ensure_ascii=False) if isinstance(d, dict) else d) + "\n")
  return docs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("tok")
  docs = write_shards(root / "filtered")
  assert tt.main(["--input", str(root / "filtered"), "--output", str(root / "tokenizer"),
                  "--vocab-size", "512", "--heldout-fraction", "0.2"]) == 0
  return root, docs, str(root / "tokenizer" / tt.TOKENIZER_FILE)


def test_special_tokens_first_and_nfc(trained):
  _, _, path = trained
  tok = tokenizers.Tokenizer.from_file(path)
  assert [tok.id_to_token(i) for i in range(7)] == list(special_tokens.ALL)
  assert tok.token_to_id("<|endoftext|>") == special_tokens.EOS_ID == 0
  assert tok.encode("caf\u0065\u0301 ya").ids == tok.encode("caf\u00e9 ya").ids


def test_round_trip_swahili_and_apostrophes(trained):
  _, _, path = trained
  tok = tokenizers.Tokenizer.from_file(path)
  for text in [APOSTROPHES, *SENTENCES, "Bei ni TSh 12,500/= (2026) — “sawa”!\n\nKaribu   tena"]:
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_report_numbers(trained):
  root, docs, path = trained
  report = json.loads((root / "tokenizer" / tt.REPORT_FILE).read_text())
  held = [d for d in docs if tt.id_unit(d["id"]) < 0.2]
  assert report["heldout_docs"] == len(held) > 0
  assert report["train_docs"] + report["heldout_docs"] == len(docs)
  tok = tokenizers.Tokenizer.from_file(path)
  ntok = sum(len(tok.encode(d["text"]).ids) for d in held)
  nbytes = sum(len(d["text"].encode()) for d in held)
  h = report["heldout"]
  assert h["tokens"] == ntok and h["bytes_per_token"] == pytest.approx(nbytes / ntok)
  assert h["tokens_per_word"] == pytest.approx(ntok / sum(len(d["text"].split()) for d in held))
  assert h["round_trip_exact"] == len(held) and h["round_trip_failure_count"] == 0
  assert report["sha256"] == records.sha256_file(path)
  stats = json.loads((root / "tokenizer" / "stats.json").read_text())
  assert stats["docs"]["in"] == stats["docs"]["out"] + sum(stats["docs"]["dropped"].values())


def test_measure_any_tokenizer_on_the_heldout_documents(trained, tmp_path):
  """--measure: the trained BPE gets its report's own figures; a byte-level BPE without merges
  (one token per byte) gets exactly 1 byte per token."""
  root, docs, path = trained
  bytes_only = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={
      c: i for i, c in enumerate(tokenizers.pre_tokenizers.ByteLevel.alphabet())}, merges=[]))
  bytes_only.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  bytes_only.decoder = tokenizers.decoders.ByteLevel()
  bytes_only.save(str(tmp_path / "bytes.json"))
  out = tmp_path / "fertility"
  assert tt.main(["--input", str(root / "filtered"), "--output", str(out), "--heldout-fraction",
                  "0.2", "--measure", path, "--measure", str(tmp_path / "bytes.json")]) == 0
  got = json.loads((out / "fertility.json").read_text())["tokenizers"]
  report = json.loads((root / "tokenizer" / tt.REPORT_FILE).read_text())["heldout"]
  for key in ("tokens", "bytes", "words", "bytes_per_token", "tokens_per_word"):
    assert got[path][key] == report[key], key
  assert got[str(tmp_path / "bytes.json")]["bytes_per_token"] == 1.0
  assert got[str(tmp_path / "bytes.json")]["tokens"] == report["bytes"]


def test_report_lists_round_trip_failures(trained):
  _, _, path = trained
  tok = tokenizers.Tokenizer.from_file(path)
  m = tt.measure(tok, [{"id": "nfd", "text": "Habari ya cafe\u0301"}, {"id": "ok", "text": "Habari"}])
  assert m["round_trip_exact"] == 1 and m["round_trip_failures"][0]["id"] == "nfd"
  assert m["round_trip_failures"][0]["why"] == "input not NFC"


def run_tokenize(root, out, tok_path, workers=1, **kw):
  args = ["--input", str(root / "filtered"), "--tokenizer", tok_path, "--output", str(out),
          "--validation-fraction", "0.2", "--num-shards", "2", "--workers", str(workers)]
  for k, v in kw.items():
    args += [f"--{k.replace('_', '-')}", str(v)]
  assert tkz.main(args) == 0
  return json.loads((out / "stats.json").read_text())


def record_files(out):
  return {p.name: p.read_bytes() for p in out.iterdir() if p.name.endswith(".array_record")}


def test_tokenize_contract_loader_and_split(trained, tmp_path):
  root, docs, tok_path = trained
  out = tmp_path / "records"
  st = run_tokenize(root, out, tok_path)
  manifest = records.read_manifest(str(out))
  tok = tokenizers.Tokenizer.from_file(tok_path)
  config = tiny_config(str(out), tok_path, tok.get_vocab_size())
  assert loader.check_manifest(config).tokenizer_sha256 == records.sha256_file(tok_path)
  batch = next(iter(loader.train_dataset(config, manifest)))
  assert batch["inputs"].shape == (8, 32) and batch["inputs"].max() < tok.get_vocab_size()
  val = [d for d in docs if tt.id_unit(d["id"]) < 0.2]
  assert manifest.splits["validation"].documents == len(val)
  assert manifest.splits["train"].documents == len(docs) - len(val)
  got = [list(r) for p in manifest.shard_paths(str(out), "validation")
         for r in records.read_shard(p, manifest.dtype)]
  in_order = [d for k in range(3) for d in docs[k::3] if tt.id_unit(d["id"]) < 0.2]
  want = [tok.encode(d["text"]).ids + [special_tokens.EOS_ID] for d in in_order]
  assert got == want   # input-shard order, one record per document, ending with EOS
  ntok = sum(len(r) for p in manifest.shard_paths(str(out), "train")
             for r in records.read_shard(p, manifest.dtype))
  assert ntok == manifest.splits["train"].tokens == st["splits"]["train"]["tokens"]
  # byte-identical records for any --workers
  out2 = tmp_path / "records2"
  run_tokenize(root, out2, tok_path, workers=2)
  assert record_files(out) == record_files(out2)


def test_tokenize_writes_train_records_round_robin_in_input_order(trained, tmp_path,
                                                                  monkeypatch):
  """Train document k (input order) is record k // 2 of shard k % 2, also when the merge reads
  its files in chunks smaller than a shard (staged, one ArrayRecord writer open at a time)."""
  root, docs, tok_path = trained
  monkeypatch.setattr(tkz, "_READ_DOCS", 7)
  out = tmp_path / "records"
  run_tokenize(root, out, tok_path)
  manifest = records.read_manifest(str(out))
  tok = tokenizers.Tokenizer.from_file(tok_path)
  train = [d for k in range(3) for d in docs[k::3] if tt.id_unit(d["id"]) >= 0.2]
  shards_ = [[list(r) for r in records.read_shard(p, manifest.dtype)]
             for p in manifest.shard_paths(str(out), "train")]
  assert len(shards_) == 2 and sum(map(len, shards_)) == len(train) > 14
  for k, d in enumerate(train):
    assert shards_[k % 2][k // 2] == tok.encode(d["text"]).ids + [special_tokens.EOS_ID]
  assert not (out / tkz.PARTS / "staging").exists()


def test_tokenize_accounting_and_special_token_text(trained, tmp_path):
  root, _, tok_path = trained
  src = tmp_path / "filtered"
  docs = write_shards(src, n_shards=2, n_docs=20, extra=[
      {"id": "empty", "text": "  ", "source": "t"}, '{"id": "bad", "text": "Hab',
      {"id": "spell", "text": "Habari <|endoftext|> yako", "source": "t"}])
  out = tmp_path / "rec"
  st = run_tokenize(tmp_path, out, tok_path, validation_fraction=0.0, num_validation_shards=1)
  d = st["docs"]
  assert d["in"] == len(docs) and d["dropped"] == {"empty": 1, "malformed_json": 1}
  s = st["splits"]
  assert d["in"] == s["train"]["documents"] + s["validation"]["documents"] + 2
  manifest = records.read_manifest(str(out))
  ids = [r for p in manifest.shard_paths(str(out), "train") for r in records.read_shard(p, "uint16")]
  assert all((r == special_tokens.EOS_ID).sum() == 1 and r[-1] == special_tokens.EOS_ID for r in ids)
  removed = [json.loads(x) for p in (out / "removed").iterdir() for x in p.open()]
  assert sorted(r["reason"] for r in removed) == ["empty", "malformed_json"]


def test_tokenize_sigkill_rerun_is_byte_identical(trained, tmp_path):
  root, _, tok_path = trained
  args = [sys.executable, "-m", "data_pipeline.tokenize", "--input", str(root / "filtered"),
          "--tokenizer", tok_path, "--validation-fraction", "0.2", "--num-shards", "2",
          "--batch-docs", "4"]
  clean = tmp_path / "clean"
  killed = tmp_path / "killed"
  subprocess.run(args + ["--output", str(clean)], cwd=REPO, check=True)
  kill = fault_hooks.command("unit_progress@1", "data_pipeline.tokenize", args[3:])
  r = subprocess.run(kill + ["--output", str(killed)], cwd=REPO)   # after shard 1's first batch
  assert r.returncode == -9 and not (killed / "manifest.json").exists()
  subprocess.run(args + ["--output", str(killed)], cwd=REPO, check=True)
  assert record_files(killed) == record_files(clean)
  for name in ("manifest.json", "stats.json"):
    assert (killed / name).read_bytes() == (clean / name).read_bytes()
  assert len(record_files(clean)) == 3
  assert json.loads((killed / "run.json").read_text())["shards_skipped"] >= 1


def test_training_is_deterministic(trained, tmp_path):
  root, _, path = trained
  assert tt.main(["--input", str(root / "filtered"), "--output", str(tmp_path / "again"),
                  "--vocab-size", "512", "--heldout-fraction", "0.2"]) == 0
  assert records.sha256_file(str(tmp_path / "again" / tt.TOKENIZER_FILE)) == records.sha256_file(path)
