"""plan-data: Muennighoff epochs and caps, FineWeb-2 rehydration, and the per-source record index
that tokenize writes for the loader (swahili100/records.py `read_source_index`)."""

import json
import math

import numpy as np
import pytest
import tokenizers

from conftest import documents, train_tokenizer
from configs import pipeline as pipeline_config
from data_pipeline import plan_data, shards
from data_pipeline import tokenize as tkz
from data_pipeline.train_tokenizer import id_unit
from swahili100 import records, special_tokens


def _cfg(**overrides):
  c = pipeline_config.get_config().plan
  c.bytes_per_token = 4.0
  for k, v in overrides.items():
    c[k] = v
  return c


def _write(folder, docs):
  folder.mkdir(parents=True, exist_ok=True)
  with shards.ShardWriter(folder / "part-00000.jsonl") as w:
    for d in docs:
      w.write(d)


def _docs(source, n, nbytes, cluster=None):
  return [{"id": f"{source}-{i}", "text": "a" * nbytes, "source": source,
           **({"dup_cluster_size": cluster} if cluster else {})} for i in range(n)]


@pytest.fixture
def three(tmp_path):
  """a: 1000 tokens in 10 documents, b: 1000 in 5, c: 500 in 20 (4 bytes per token)."""
  _write(tmp_path / "f" / "x", _docs("a", 10, 400) + _docs("b", 5, 800) + _docs("c", 20, 100))
  return plan_data.count_sources(tmp_path / "f")


def _plan(sources, **cfg):
  c = _cfg(**cfg)
  plan_data.attach_tokens(sources, c, None, None)
  return plan_data.plan(sources, c)


def test_muennighoff_equal_epochs_weights_and_effective_data(three):
  assert {n: (s.documents, s.bytes) for n, s in three.items()} == {
      "a": (10, 4000), "b": (5, 4000), "c": (20, 2000)}
  p = _plan(three, tokens=7500.0)
  s = p["sources"]
  assert [s[n]["tokens"] for n in "abc"] == [1000, 1000, 500]
  assert all(s[n]["epochs"] == pytest.approx(3.0) for n in "abc")   # 7500 / 2500 unique
  assert [s[n]["weight"] for n in "abc"] == pytest.approx([0.4, 0.4, 0.2])
  assert sum(s[n]["weight"] for n in "abc") == pytest.approx(1.0)
  # documents drawn = epochs x documents: 30, 15, 60 of 105
  assert [s[n]["document_weight"] for n in "abc"] == pytest.approx([30 / 105, 15 / 105, 60 / 105])
  assert p["planned_tokens"] == 7500 and p["unique_tokens"] == 2500
  # D' = U + U R* (1 - exp(-R / R*)), R = 2, R* = 15.4: 3 epochs are worth 2.88 unique ones
  assert s["a"]["effective_tokens"] == round(1000 * (1 + 15.4 * (1 - math.exp(-2 / 15.4))))
  assert s["a"]["effective_tokens"] == 2876
  assert p["warnings"] == []


def test_more_than_four_epochs_is_warned(three):
  p = _plan(three, tokens=15000.0)
  assert all(p["sources"][n]["epochs"] == pytest.approx(6.0) for n in "abc")
  warned = [w for w in p["warnings"] if "6.0 epochs" in w and "> 4" in w]
  assert len(warned) == 3 and "Muennighoff" in warned[0]
  assert _plan(three, tokens=10000.0)["warnings"] == []   # exactly 4 epochs: no warning


def test_capped_source_and_water_filling(three):
  p = _plan(three, tokens=15000.0, source_max_epochs="c=2")
  s = p["sources"]
  assert s["c"]["epochs"] == pytest.approx(2.0)                      # 1000 tokens at its cap
  assert s["a"]["epochs"] == s["b"]["epochs"] == pytest.approx(7.0)  # (15000 - 1000) / 2000
  assert [s[n]["weight"] for n in "abc"] == pytest.approx([7 / 15, 7 / 15, 1 / 15])
  short = _plan(three, tokens=15000.0, max_epochs=4.0)               # every source capped
  assert short["planned_tokens"] == 10000
  assert all(short["sources"][n]["epochs"] == pytest.approx(4.0) for n in "abc")
  assert any("exceeds what the epoch caps allow" in w and "67%" in w for w in short["warnings"])
  with pytest.raises(ValueError, match="name=epochs"):
    _plan(three, tokens=100.0, source_max_epochs="c:2")


def test_fineweb2_rehydration_repeats_by_cluster_size():
  table = pipeline_config.get_config().plan.rehydrate
  sizes = [0, 1, 2, 3, 4, 5, 99, 100, 999, 1000, 5000]
  want = [1, 1, 2, 3, 3, 5, 5, 8, 8, 1, 1]   # FineWeb-2 README: N=4 -> 3, N>=1000 -> 1
  assert [plan_data.repeats(n, table) for n in sizes] == want
  assert plan_data.repeats(np.array(sizes), table).tolist() == want


def test_rehydrate_plan_repeats_and_caps(tmp_path):
  docs = (_docs("a", 6, 400, 1) + _docs("a2", 2, 400, 2) + _docs("a4", 1, 400, 4)
          + _docs("a150", 1, 400, 150) + _docs("b", 10, 400))
  for d in docs:
    d["source"] = d["source"][0]   # a: clusters 1 x6, 2 x2, 4, 150; b: no cluster sizes
  _write(tmp_path / "f", docs)
  sources = plan_data.count_sources(tmp_path / "f")
  # rehydrated tokens per pass: a 600 x1 + 200 x2 + 100 x3 + 100 x8 = 2100, b 1000: 2 passes
  p = _plan(sources, tokens=6200.0, rule="rehydrate")
  a = p["sources"]["a"]
  assert [(r["cluster_sizes"], r["repeat"], r["documents"], r["epochs"]) for r in a["repeats"]] == [
      ("1", 1, 6, 2.0), ("2", 2, 2, 4.0), ("3-4", 3, 1, 6.0), ("100-999", 8, 1, 16.0)]
  assert a["planned_tokens"] == 4200 and a["epochs"] == pytest.approx(4.2)
  assert (a["repeats"][3]["min_size"], a["repeats"][3]["max_size"]) == (100, 999)
  assert a["weight"] == pytest.approx(4200 / 6200)
  assert p["sources"]["b"]["weight"] == pytest.approx(2000 / 6200)
  assert any("b: 10 of 10 documents have no dup_cluster_size" in w for w in p["warnings"])
  assert any("a: 16.0 epochs of its most repeated" in w for w in p["warnings"])
  # 3 passes would give the 100-999 bucket 24 epochs: it stays at 16, the rest share the rest
  p = _plan(sources, tokens=9300.0, rule="rehydrate")
  level = (9300 - 1600) / 2300
  got = {r["cluster_sizes"]: r["epochs"] for r in p["sources"]["a"]["repeats"]}
  assert got == pytest.approx({"1": level, "2": 2 * level, "3-4": 3 * level, "100-999": 16.0})
  assert p["planned_tokens"] == 9300
  assert sum(s["weight"] for s in p["sources"].values()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
  """Filtered shards of two sources (some deduplicated clusters), tokenized into 3 train shards."""
  root = tmp_path_factory.mktemp("mix")
  tok_path = str(root / "tok.json")
  train_tokenizer(tok_path)
  texts = documents(60)
  docs = [{"id": f"d{i}", "text": t, "source": "news" if i % 3 else "wiki",
           **({"dup_cluster_size": 1 + i % 4} if i % 5 else {})} for i, t in enumerate(texts)]
  docs.append({"id": "blank", "text": "  ", "source": "news"})   # dropped as empty
  for s in range(2):
    _write(root / "filtered" / f"s{s}", docs[s::2])
  assert tkz.main(["--input", str(root / "filtered"), "--tokenizer", tok_path, "--output",
                   str(root / "records"), "--validation-fraction", "0.2", "--num-shards", "3",
                   "--workers", "2"]) == 0
  return root, tok_path, docs


def test_source_index_matches_records_in_shard_major_order(tokenized):
  root, tok_path, docs = tokenized
  out = str(root / "records")
  manifest = records.read_manifest(out)
  assert manifest.sources == ["news", "wiki"]
  in_order = [d for _, d in shards.iter_docs(root / "filtered") if d["text"].strip()]
  train = [d for d in in_order if id_unit(d["id"]) >= 0.2]
  want = [d for i in range(3) for d in train[i::3]]   # round robin, read shard after shard
  idx = records.read_source_index(out, "train")
  assert [idx.names[k] for k in idx.source] == [d["source"] for d in want]
  assert idx.cluster_size.tolist() == [d.get("dup_cluster_size", 0) for d in want]
  tok = tokenizers.Tokenizer.from_file(tok_path)
  got = [r.tolist() for p in manifest.shard_paths(out, "train")
         for r in records.read_shard(p, manifest.dtype)]
  assert got == [tok.encode(d["text"]).ids + [special_tokens.EOS_ID] for d in want]
  for name in idx.names:   # manifest counts agree with the index and the records
    mine = [len(r) for r, k in zip(got, idx.source) if idx.names[k] == name]
    assert idx.counts[name] == {"documents": len(mine), "tokens": sum(mine), "bytes": sum(
        len(d["text"].encode()) for d in want if d["source"] == name)}
  val = records.read_source_index(out, "validation")
  assert len(val.source) == manifest.splits["validation"].documents > 0
  assert sum(c["documents"] for c in idx.counts.values()) == manifest.splits["train"].documents


def test_plan_data_cli_with_records(tokenized, capsys):
  root, _, _ = tokenized
  out = root / "mixture.json"
  assert plan_data.main(["--input", str(root / "filtered"), "--records", str(root / "records"),
                         "--tokens", "2e4", "--output", str(out)]) == 0
  mix = json.loads(out.read_text())
  counts = records.read_manifest(str(root / "records")).splits["train"].sources
  assert {n: s["tokens"] for n, s in mix["sources"].items()} == {
      n: c["tokens"] for n, c in counts.items()}
  assert {n: s["documents"] for n, s in mix["sources"].items()} == {
      n: c["documents"] for n, c in counts.items()}
  assert mix["tokens_from"].startswith("records:")
  unique = sum(c["tokens"] for c in counts.values())
  assert all(s["epochs"] == pytest.approx(2e4 / unique) for s in mix["sources"].values())
  assert not any("were the records made from this input" in w for w in mix["warnings"])
  assert sum(s["weight"] for s in mix["sources"].values()) == pytest.approx(1.0)
  assert "news" in capsys.readouterr().err   # the table
  # --config.plan.* and the short flags set the same fields; one field, one value
  assert plan_data.main(["--input", str(root / "filtered"), "--output", str(out),
                         "--config.plan.rule=rehydrate", "--config.plan.tokens=5e4"]) == 0
  mix = json.loads(out.read_text())
  assert mix["rule"] == "rehydrate" and mix["target_tokens"] == 5e4
  assert mix["tokens_from"].startswith("estimated: bytes / 4.930")
  assert plan_data.main(["--input", str(root / "filtered"), "--output", str(out), "--rule",
                         "muennighoff", "--config.plan.tokens=5e4"]) == 0
  assert json.loads(out.read_text())["rule"] == "muennighoff"
  capsys.readouterr()
  with pytest.raises(SystemExit):
    plan_data.main(["--input", str(root / "filtered"), "--output", str(out), "--rule",
                    "muennighoff", "--config.plan.rule=rehydrate"])
  assert "--rule and --config.plan.rule set the same field" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    plan_data.main(["--input", str(root / "filtered"), "--output", str(out),
                    "--config.plan.tokenz=1"])
  assert "unknown config key --config.plan.tokenz" in capsys.readouterr().err


def test_old_manifest_has_no_source_index(tiny_records):
  records_dir, _, _ = tiny_records   # conftest writes a manifest without per-source fields
  manifest = records.read_manifest(records_dir)
  assert manifest.sources is None and manifest.splits["train"].sources is None
  assert records.read_source_index(records_dir, "train") is None
