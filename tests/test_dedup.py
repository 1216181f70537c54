"""Phase 3 (dedup): quality on a planted benchmark of real Swahili text, survivors, exact dups,
the persistent index, and datasketch-compatible signatures identical for any --workers."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from data_pipeline import dedup, shards

REPO = Path(__file__).resolve().parents[1]
SW_NEWS = REPO.parent / "shared" / "data" / "sw-news"
SAMPLE = REPO / "data_pipeline" / "sample"


def _write(path: Path, docs: list[dict]) -> None:
  with shards.ShardWriter(path) as w:
    for d in docs:
      w.write(d)


def _outputs(out: Path) -> tuple[dict, dict]:
  """(surviving docs by id, removed records by doc id)."""
  kept = {d["id"]: d for p in shards.list_shards(out) for d in shards.read_shard(p, shards.Stats())}
  removed = {}
  for p in shards.list_shards(out / shards.REMOVED_DIR):
    for r in _lines(p):
      removed[r["doc"]["id"]] = r
  return kept, removed


def _lines(p: Path) -> list[dict]:
  import gzip
  data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
  return [json.loads(l) for l in data.splitlines() if l.strip()]


def _shingles(text: str, n: int = 5) -> set:
  return set(dedup.shingle_batch([text], n)[0].tolist())   # 32-bit hashes of word 5-grams


def _jaccard(a: str, b: str) -> float:
  x, y = _shingles(a), _shingles(b)
  return len(x & y) / len(x | y)


def _base_texts(n: int) -> list[str]:
  """n distinct real Swahili documents of 80+ words (sw-news, else the sample corpus)."""
  texts, seen = [], set()
  if SW_NEWS.exists():
    for _, d in shards.iter_docs(SW_NEWS):
      t = d["text"]
      if len(t.split()) >= 80 and t[:200] not in seen:
        seen.add(t[:200])
        texts.append(t)
      if len(texts) >= 4 * n:
        break
    return texts[::4][:n]   # spread over the shard: neighbours in sw-news share sentences
  for _, d in shards.iter_docs(SAMPLE):
    if "planted" not in d and len(d["text"].split()) >= 80:
      texts.append(d["text"])
  return texts[:n]


def _edit(text: str, rate: float, r: random.Random, vocab: list[str]) -> str:
  """Substitutes, deletes or inserts words at `rate` per word (at least one edit)."""
  words = text.split()
  k = max(1, round(rate * len(words)))
  for j in sorted(r.sample(range(len(words)), min(k, len(words))), reverse=True):
    op = r.random()
    if op < 0.6:
      words[j] = r.choice(vocab)
    elif op < 0.8:
      del words[j]
    else:
      words.insert(j, r.choice(vocab))
  return " ".join(words)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """Bases + variants at controlled edit rates, deduplicated once at the default threshold."""
  r = random.Random(0)
  bases = _base_texts(150)
  if len(bases) < 60:
    pytest.skip("not enough documents of 80+ words for the planted benchmark")
  vocab = sorted({w for t in bases for w in t.split()})
  rates = [0.003, 0.006, 0.01, 0.015, 0.02, 0.04, 0.08, 0.12, 0.2, 0.3]
  docs, pairs = [], []
  for i, t in enumerate(bases):
    docs.append({"id": f"base-{i:03d}", "text": t, "source": "bench"})
  for i, t in enumerate(bases):
    for k in r.sample(range(len(rates)), 4):
      v = _edit(t, rates[k], r, vocab)
      vid = f"var-{i:03d}-{k}"
      docs.append({"id": vid, "text": v, "source": "bench"})
      pairs.append((f"base-{i:03d}", vid, _jaccard(t, v)))
  inp = tmp_path_factory.mktemp("planted_in")
  _write(inp / "a.jsonl", docs[: len(docs) // 2])
  _write(inp / "b.jsonl.gz", docs[len(docs) // 2:])
  out = inp.parent / "planted_out"
  assert dedup.main(["--input", str(inp), "--output", str(out), "--workers", "2"]) == 0
  return inp, out, pairs


def test_planted_benchmark_recall_and_false_positives(planted):
  _, out, pairs = planted
  kept, removed = _outputs(out)
  high = [(b, v) for b, v, j in pairs if j >= 0.9]
  low = [(b, v) for b, v, j in pairs if j <= 0.5]
  assert len(high) >= 100 and len(low) >= 100, (len(high), len(low))
  found = sum(v in removed and removed[v]["duplicate_of"] == b for b, v in high)
  assert found / len(high) >= 0.95, f"recall {found}/{len(high)}"
  false = sum(v in removed and removed[v]["duplicate_of"] == b for b, v in low)
  print(f"planted benchmark: recall {found}/{len(high)} = {found / len(high):.3f} at Jaccard >= 0.9; "
        f"removed {false}/{len(low)} pairs at Jaccard <= 0.5")  # the figures in docs/benchmarks.md
  assert false / len(low) <= 0.01, f"removed {false}/{len(low)} pairs with Jaccard <= 0.5"
  assert all(b in kept for b, _, _ in pairs)   # bases come first: they always survive


def test_survivor_cluster_size_and_duplicate_of(planted):
  inp, out, _ = planted
  kept, removed = _outputs(out)
  st = json.loads((out / "stats.json").read_text())
  assert st["docs"]["in"] == len(kept) + len(removed) == st["docs"]["out"] + sum(
      st["docs"]["dropped"].values())
  sizes: dict[str, int] = {}
  for r in removed.values():
    assert r["reason"] in ("near_duplicate", "exact_duplicate")
    assert r["duplicate_of"] in kept, "a removed document points to a survivor"
    assert 0.0 < r["jaccard"] <= 1.0
    sizes[r["duplicate_of"]] = sizes.get(r["duplicate_of"], 0) + 1
  for doc_id, d in kept.items():
    assert d["dup_cluster_size"] == 1 + sizes.get(doc_id, 0)


def test_workers_give_identical_outputs_and_signatures(planted, tmp_path):
  inp, out2, _ = planted
  out1 = tmp_path / "w1"
  assert dedup.main(["--input", str(inp), "--output", str(out1), "--workers", "1"]) == 0
  for p in shards.list_shards(out2):
    rel = p.relative_to(out2)
    assert (out1 / rel).read_bytes() == p.read_bytes(), rel
  for p in sorted((out2 / dedup.STATE_DIR).glob("*.json")):
    if p.name != "complete.json":
      assert (out1 / dedup.STATE_DIR / p.name).read_bytes() == p.read_bytes()
  args = [(q, q.name, 1 << 20, 5, 128, 1, 7) for q in shards.list_shards(inp)]
  s_small = dedup._shard_signatures(args[0])[3]
  s_big = dedup._shard_signatures(args[0][:-1] + (4096,))[3]   # batch size does not matter
  assert np.array_equal(s_small, s_big)


def test_signatures_equal_datasketch_affine32():
  from datasketch import MinHash
  text = "Mvua kubwa ilinyesha jana jioni katika mji wa Dodoma na kusababisha mafuriko makubwa."
  sh = dedup.shingle_batch([text], 5)[0]
  a, b = dedup.permutations(128, 1)
  ours = dedup.minhash_batch([sh, sh[:3]], a, b)
  for row, s in zip(ours, [sh, sh[:3]]):
    m = MinHash(num_perm=128, seed=1, hashfunc=int, scheme="affine32")
    m.update_batch([int(x) for x in s])
    assert np.array_equal(row, m.hashvalues.astype(np.uint32))


def test_shingles_do_not_depend_on_batch_or_position():
  t = "Habari za asubuhi ndugu yangu mpendwa, karibu sana nyumbani kwetu leo."
  alone = dedup.shingle_batch([t], 5)[0]
  batch = dedup.shingle_batch(["Mvua “imenyesha” sana.", t, "", "Ndiyo"], 5)
  assert np.array_equal(batch[1], alone) and len(alone) == 7   # 11 words
  assert len(batch[0]) == 1 and np.array_equal(batch[2], [0])   # short text, empty text
  tail = dedup.shingle_batch(["Kwanza kabisa " + t], 5)[0]
  assert np.array_equal(tail[2:], alone)   # the same 5-grams hash the same anywhere
  a, b = dedup.shingle_batch(["Mvua \u201cimenyesha\u2019 sana\u2026 ", "mvua imenyesha sana"], 3)
  assert np.array_equal(a, b)   # case, quotes and ellipsis are not part of words


def test_exact_duplicates_case_and_whitespace(tmp_path):
  t = "Serikali imetangaza mpango mpya wa kujenga shule katika vijiji vya pwani mwaka huu."
  docs = [{"id": "a", "text": t, "source": "s"},
          {"id": "b", "text": "Wakulima wa mahindi wanasema mavuno ni mazuri mwaka huu kuliko jana.",
           "source": "s"},
          {"id": "c", "text": "  " + t.upper().replace(" ", "\n  "), "source": "s"},
          {"id": "d", "text": t, "source": "s"}]
  _write(tmp_path / "in" / "x.jsonl", docs)
  assert dedup.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
  kept, removed = _outputs(tmp_path / "out")
  assert sorted(kept) == ["a", "b"] and kept["a"]["dup_cluster_size"] == 3
  assert {k: (r["reason"], r["duplicate_of"]) for k, r in removed.items()} == {
      "c": ("exact_duplicate", "a"), "d": ("exact_duplicate", "a")}


def test_persistent_folder_index_dedups_against_earlier_runs(tmp_path):
  r = random.Random(1)
  base = _base_texts(6)
  vocab = sorted({w for t in base for w in t.split()})
  run1 = [{"id": f"old-{i}", "text": t, "source": "s"} for i, t in enumerate(base[:3])]
  run2 = [{"id": "new-0", "text": _edit(base[0], 0.003, r, vocab), "source": "s"},
          {"id": "new-1", "text": base[4], "source": "s"}]
  _write(tmp_path / "in1" / "x.jsonl", run1)
  _write(tmp_path / "in2" / "y.jsonl", run2)
  index = str(tmp_path / "index")
  assert dedup.main(["--input", str(tmp_path / "in1"), "--output", str(tmp_path / "o1"),
                     "--index", index]) == 0
  assert dedup.main(["--input", str(tmp_path / "in2"), "--output", str(tmp_path / "o2"),
                     "--index", index]) == 0
  kept, removed = _outputs(tmp_path / "o2")
  assert list(kept) == ["new-1"] and removed["new-0"]["duplicate_of"] == "old-0"
  st = json.loads((tmp_path / "o2" / "stats.json").read_text())
  assert st["dedup"]["near_duplicates_of_earlier_runs"] == 1
  # rerunning run 2 from scratch ignores its own earlier index entry: same decision
  assert dedup.main(["--input", str(tmp_path / "in2"), "--output", str(tmp_path / "o3"),
                     "--index", index]) == 0
  assert (tmp_path / "o3" / "y.jsonl").read_bytes() == (tmp_path / "o2" / "y.jsonl").read_bytes()
  with pytest.raises(SystemExit, match="another input or config"):   # same output, new input
    dedup.main(["--input", str(tmp_path / "in1"), "--output", str(tmp_path / "o2")])
  with pytest.raises(ValueError, match="--num-perm"):
    dedup.main(["--input", str(tmp_path / "in2"), "--output", str(tmp_path / "o4"),
                "--index", index, "--num-perm", "64"])


def test_redis_index_dedups_against_earlier_runs(tmp_path, monkeypatch):
  """datasketch's Redis storage end to end; without a server, fakeredis answers at the socket API."""
  redis = pytest.importorskip("redis")
  import socket
  try:
    socket.create_connection(("localhost", 6379), timeout=0.5).close()
  except OSError:
    fakeredis = pytest.importorskip("fakeredis")
    server = fakeredis.FakeServer()
    monkeypatch.setattr(redis, "Redis", lambda **kw: fakeredis.FakeRedis(server=server, **kw))
  r = random.Random(2)
  base = _base_texts(5)
  vocab = sorted({w for t in base for w in t.split()})
  _write(tmp_path / "in1" / "x.jsonl",
         [{"id": f"old-{i}", "text": t, "source": "s"} for i, t in enumerate(base[:3])])
  _write(tmp_path / "in2" / "y.jsonl",
         [{"id": "new-0", "text": _edit(base[1], 0.003, r, vocab), "source": "s"},
          {"id": "new-1", "text": base[4], "source": "s"}])
  url = "redis://localhost:6379/15"
  for run in ("1", "2"):
    assert dedup.main(["--input", str(tmp_path / f"in{run}"), "--output", str(tmp_path / f"o{run}"),
                       "--index", url]) == 0
  kept, removed = _outputs(tmp_path / "o2")
  assert list(kept) == ["new-1"] and removed["new-0"]["duplicate_of"] == "old-1"
