"""Grain loading of token records: packing, masking, resumable iterator, manifest checks."""

import json
import os
import shutil

import numpy as np
import pytest
import tokenizers

from swahili100 import lm, loader, records, special_tokens

from conftest import documents, tiny_config, write_records


def _config(tiny_records, **kw):
  return tiny_config(*tiny_records, **kw)


def test_rows_pack_documents_with_restarting_positions_and_masked_boundaries(tiny_records):
  config = _config(tiny_records, **{"data.seq_len": 64})
  manifest = loader.check_manifest(config)
  batch = next(iter(loader.train_dataset(config, manifest)))
  B, T = 8, 64
  for key in ("inputs", "targets", "segment_ids", "positions", "mask"):
    assert batch[key].shape == (B, T), key
  seg, pos, mask = batch["segment_ids"], batch["positions"], batch["mask"]
  assert (seg.max(axis=1) >= 2).any(), "rows should pack several documents"
  for b in range(B):
    for t in range(1, T):
      if seg[b, t] == seg[b, t - 1]:
        assert pos[b, t] == pos[b, t - 1] + 1
      else:
        assert pos[b, t] == 0  # a new document restarts its positions
    # a target is trained only when it belongs to the same document as its input
    same = np.append(seg[b, 1:] == seg[b, :-1], False) & (seg[b] > 0)
    np.testing.assert_array_equal(mask[b][:-1], same[:-1])
  np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
  # every document ends with EOS, and EOS is followed by a masked boundary
  eos_in = np.argwhere(batch["inputs"] == special_tokens.EOS_ID)
  for b, t in eos_in:
    if t + 1 < T:
      assert seg[b, t + 1] != seg[b, t] or seg[b, t + 1] == 0


def test_long_documents_are_split_across_rows(tiny_records, tmp_path):
  _, tok_path, vocab = tiny_records
  long_doc = " ".join(documents(40))
  write_records(str(tmp_path / "rec"), tok_path, [long_doc] * 2, [long_doc])
  config = tiny_config(str(tmp_path / "rec"), tok_path, vocab, **{"data.seq_len": 32})
  manifest = loader.check_manifest(config)
  batch = next(iter(loader.train_dataset(config, manifest)))
  n_tokens = len(tokenizers.Tokenizer.from_file(tok_path).encode(long_doc).ids) + 1
  assert n_tokens > 8 * 33
  # each row is one piece of the long document: one segment, positions 0..T-1
  assert (batch["segment_ids"] == 1).all()
  np.testing.assert_array_equal(batch["positions"], np.tile(np.arange(32), (8, 1)))


def test_iterator_state_round_trips_with_prefetch(tiny_records):
  config = _config(tiny_records, **{"data.prefetch": 2})
  manifest = loader.check_manifest(config)
  it = iter(loader.train_dataset(config, manifest))
  for _ in range(5):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(4)]
  it2 = iter(loader.train_dataset(config, manifest))
  it2.set_state(json.loads(json.dumps(state)))  # the state survives JSON (checkpoint format)
  got = [next(it2) for _ in range(4)]
  for w, g in zip(want, got):
    for k in w:
      np.testing.assert_array_equal(w[k], g[k])


def test_shuffle_depends_on_seed_and_processes_get_disjoint_halves(tiny_records):
  c0, c1 = _config(tiny_records), _config(tiny_records, **{"data.shuffle_seed": 1})
  manifest = loader.check_manifest(c0)
  a = next(iter(loader.train_dataset(c0, manifest)))["inputs"]
  b = next(iter(loader.train_dataset(c1, manifest)))["inputs"]
  assert not np.array_equal(a, b)
  p0 = next(iter(loader.train_dataset(c0, manifest, 0, 2)))["inputs"]
  p1 = next(iter(loader.train_dataset(c0, manifest, 1, 2)))["inputs"]
  assert p0.shape == (4, 32) and not np.array_equal(p0, p1)


def test_global_batch_is_the_same_for_any_process_count(tiny_records):
  """Process p's rows are rows [p B/P, (p+1) B/P) of the one-process batch, step after step,
  each process reading only its documents: what makes 2 processes train like 1."""
  config = _config(tiny_records)
  manifest = loader.check_manifest(config)
  one = iter(loader.train_dataset(config, manifest))
  splits = {n: [iter(loader.train_dataset(config, manifest, i, n)) for i in range(n)]
            for n in (2, 4)}
  for _ in range(6):
    want = next(one)
    for parts in splits.values():
      got = [next(p) for p in parts]
      for k in want:
        np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), want[k])


def test_token_bytes_sum_to_the_text_bytes(tiny_records):
  _, tok_path, vocab = tiny_records
  tok = tokenizers.Tokenizer.from_file(tok_path)
  table = lm.token_bytes(tok_path, vocab)
  text = "Ng'ombe wa mzee Juma walipotea porini — 5 km kutoka Dodoma."
  ids = tok.encode(text).ids + [special_tokens.EOS_ID]
  assert table[ids].sum() == len(text.encode("utf-8"))
  assert lm.bits_per_byte(np.log(2) * 10, 5) == pytest.approx(2.0)


def test_validation_pass_is_deterministic_and_padded(tiny_records):
  config = _config(tiny_records)
  manifest = loader.check_manifest(config)
  a = list(loader.eval_batches(config, manifest))
  b = list(loader.eval_batches(config, manifest))
  assert len(a) >= 1 and all(x["inputs"].shape == (8, 32) for x in a)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["inputs"], y["inputs"])
  total = sum(int(x["mask"].sum()) for x in a)
  n_tokens = manifest.splits["validation"].tokens
  # every validation token but each row's first is a target (no document is dropped)
  assert n_tokens - 2 * len(a) * 8 <= total <= n_tokens


def test_the_manifest_knows_its_folder_so_batches_never_list_it_again(tiny_records, monkeypatch):
  """On gs:// finding the local mirror lists the folder: once per command, not per eval."""
  config = _config(tiny_records)
  manifest = loader.check_manifest(config)
  assert manifest.root == tiny_records[0] and '"root"' not in manifest.to_json()

  def listed(_):
    raise AssertionError("the records folder was looked up again")

  monkeypatch.setattr(loader, "records_dir", listed)
  assert next(iter(loader.eval_batches(config, manifest)))["inputs"].shape == (8, 32)
  assert next(iter(loader.train_dataset(config, manifest)))["inputs"].shape == (8, 32)


def test_manifest_errors_name_the_file_and_the_fix(tiny_records, tmp_path):
  records_dir, tok_path, vocab = tiny_records
  with pytest.raises(records.RecordsError, match=r"manifest.json not found.*swahili100 tokenize"):
    loader.check_manifest(tiny_config(str(tmp_path), tok_path, vocab))
  with pytest.raises(records.RecordsError,
                     match=rf"manifest.json has vocab_size {vocab} .*--config.model.vocab_size={vocab}"):
    c = tiny_config(records_dir, tok_path, vocab)
    c.model.vocab_size = vocab + 1
    loader.check_manifest(c)
  other = str(tmp_path / "other.json")
  shutil.copy(tok_path, other)
  with open(other, "a") as f:
    f.write(" ")
  with pytest.raises(records.RecordsError, match=r"sha256 .*set --config.data.tokenizer"):
    loader.check_manifest(tiny_config(records_dir, other, vocab))
  bad = str(tmp_path / "bad")
  shutil.copytree(records_dir, bad)
  m = json.load(open(os.path.join(bad, "manifest.json")))
  m["format_version"] = 99
  json.dump(m, open(os.path.join(bad, "manifest.json"), "w"))
  with pytest.raises(records.RecordsError, match=r"format_version 99 .*re-run `swahili100 tokenize`"):
    loader.check_manifest(tiny_config(bad, tok_path, vocab))
