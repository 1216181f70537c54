"""Phase 3 (dedup): quality on a planted benchmark of real Swahili text, survivors, exact dups,
the persistent index, and datasketch-compatible signatures identical for any --workers."""

import json
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_pipeline import dedup, dedup_index, shards

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


class RedisServer:
  """Debian's redis-server on 127.0.0.1 and a free port, persisting every write (appendfsync
  always) in its folder, so a server killed and started again keeps what it had."""

  def __init__(self, folder: Path):
    binary = shutil.which("redis-server")
    if binary is None:
      pytest.skip("redis-server is not installed (`make install` installs Debian's package)")
    self.binary, self.folder, self.proc = binary, folder, None
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self.port = s.getsockname()[1]
    self.url = f"redis://127.0.0.1:{self.port}/0"

  def start(self) -> "RedisServer":
    self.folder.mkdir(parents=True, exist_ok=True)
    self.proc = subprocess.Popen(
        [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
         "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
      try:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
          c.sendall(b"PING\r\n")
          if c.recv(16).startswith(b"+PONG"):
            return self
      except OSError:
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {self.port}")

  def kill(self) -> None:
    if self.proc is not None and self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
  server = RedisServer(tmp_path / "redis").start()
  try:
    yield server
  finally:
    server.kill()


def _two_runs(tmp_path) -> tuple[list[str], list[str]]:
  r = random.Random(2)
  base = _base_texts(5)
  vocab = sorted({w for t in base for w in t.split()})
  _write(tmp_path / "in1" / "x.jsonl",
         [{"id": f"old-{i}", "text": t, "source": "s"} for i, t in enumerate(base[:3])])
  _write(tmp_path / "in2" / "y.jsonl",
         [{"id": "new-0", "text": _edit(base[1], 0.003, r, vocab), "source": "s"},
          {"id": "new-1", "text": base[4], "source": "s"}])
  return (["--input", str(tmp_path / "in1"), "--output", str(tmp_path / "o1")],
          ["--input", str(tmp_path / "in2"), "--output", str(tmp_path / "o2")])


def test_redis_index_on_a_real_server_dedups_against_earlier_runs(tmp_path, redis_server):
  run1, run2 = _two_runs(tmp_path)
  for run in (run1, run2):
    assert dedup.main([*run, "--index", redis_server.url]) == 0
  kept, removed = _outputs(tmp_path / "o2")
  assert list(kept) == ["new-1"] and removed["new-0"]["duplicate_of"] == "old-1"
  st = json.loads((tmp_path / "o2" / "stats.json").read_text())
  assert st["dedup"]["near_duplicates_of_earlier_runs"] == 1
  # run 2 again into a new folder: its own entries in the server are ignored, same decision
  assert dedup.main([run2[0], run2[1], "--output", str(tmp_path / "o3"),
                     "--index", redis_server.url]) == 0
  assert (tmp_path / "o3" / "y.jsonl").read_bytes() == (tmp_path / "o2" / "y.jsonl").read_bytes()


def test_redis_server_gone_mid_run_is_a_clear_error_and_the_rerun_finishes(tmp_path,
                                                                             redis_server):
  run1, run2 = _two_runs(tmp_path)
  assert dedup.main([*run1, "--index", redis_server.url]) == 0

  def server_dies(event, **info):   # after run 2 read the index, before it adds its survivors
    if event == "decide_shard_done":
      redis_server.kill()

  old = shards.set_event_hook(server_dies)
  try:
    with pytest.raises(SystemExit) as e:
      dedup.main([*run2, "--index", redis_server.url])
  finally:
    shards.set_event_hook(old)
  msg = str(e.value)
  assert redis_server.url in msg and "stopped answering" in msg and "rerun" in msg
  assert f"swahili100 dedup {' '.join(run2)} --index {redis_server.url}" in msg
  o2 = tmp_path / "o2"
  assert not (o2 / dedup.STATE_DIR / "complete.json").exists() and not (o2 / "stats.json").exists()
  assert not list(shards.list_shards(o2))   # no output shard that could pass for finished
  redis_server.start()   # the same folder: run 1's entries are back
  assert dedup.main([*run2, "--index", redis_server.url]) == 0
  kept, removed = _outputs(o2)
  assert list(kept) == ["new-1"] and removed["new-0"]["duplicate_of"] == "old-1"


def _reference(inp: Path, threshold: float = 0.8, num_perm: int = 128) -> dict:
  """id -> ("kept", cluster size) or (reason, duplicate_of, jaccard): the rule run directly,
  one datasketch MinHashLSH over all documents in input order."""
  from datasketch import LeanMinHash, MinHashLSH
  lsh, exact, cluster, out, sig_of = MinHashLSH(threshold=threshold, num_perm=num_perm), {}, {}, {}, {}
  for q in shards.list_shards(inp):
    _, ids, keys, sigs = dedup._shard_signatures((q, q.name, 1 << 20, 5, num_perm, 1, 512))
    for doc_id, key, sig in zip(ids, keys, sigs):
      if key in exact:
        cluster[exact[key]] += 1
        out[doc_id] = ("exact_duplicate", exact[key], 1.0)
        continue
      m = LeanMinHash(seed=1, hashvalues=sig, scheme="affine32")
      hits = [(order, c, float(np.mean(sig_of[c] == sig))) for order, c in
              ((list(cluster).index(c), c) for c in lsh.query(m))]
      hits = sorted(h for h in hits if h[2] >= threshold)
      if hits:
        cluster[hits[0][1]] += 1
        out[doc_id] = ("near_duplicate", hits[0][1], round(hits[0][2], 4))
        continue
      exact[key], cluster[doc_id], sig_of[doc_id] = doc_id, 1, sig
      lsh.insert(doc_id, m)
  out.update({k: ("kept", n) for k, n in cluster.items()})
  return out


def test_bounded_memory_passes_decide_as_one_index_over_everything(planted, tmp_path):
  """Many partitions and groups (memory_mb=1) give the decisions of one in-memory LSH."""
  inp, out, _ = planted
  small = tmp_path / "small"
  assert dedup.main(["--input", str(inp), "--output", str(small),
                     "--config.dedup.memory_mb=1"]) == 0
  for p in shards.list_shards(out):
    assert (small / p.relative_to(out)).read_bytes() == p.read_bytes()
  kept, removed = _outputs(small)
  got = {k: ("kept", d["dup_cluster_size"]) for k, d in kept.items()}
  got.update({k: (r["reason"], r["duplicate_of"], r["jaccard"]) for k, r in removed.items()})
  want = _reference(inp)
  assert got == want and sum(v[0] != "kept" for v in want.values()) >= 100


def test_union_find_gives_the_components_of_the_edges():
  rng = np.random.default_rng(0)
  n = 2000
  u, v = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
  parent = np.arange(n, dtype=np.int64)
  for a, b in zip(np.array_split(u, 7), np.array_split(v, 7)):   # as partitions come in
    dedup_index.union(parent, a, b)
  root = dedup_index.roots(parent)
  ref = list(range(n))

  def find(x):
    while ref[x] != x:
      x = ref[x]
    return x

  for a, b in zip(u.tolist(), v.tolist()):
    ref[find(a)] = find(b)
  assert len(set(root.tolist())) == len({find(x) for x in range(n)}) < n
  assert all((root[a] == root[b]) == (find(a) == find(b))
             for a, b in rng.integers(0, n, (5000, 2)).tolist()) and all(root[u] == root[v])
  assert all(root <= np.arange(n))   # the root is the smallest member: input order


def test_several_processes_remove_what_one_removes(planted, tmp_path):
  """Three processes on one shared folder (as on three machines) = one process, byte for byte;
  a process whose partners never come says which one to start."""
  inp, out, _ = planted
  many = tmp_path / "in"
  docs = [d for _, d in shards.iter_docs(inp)]
  for k in range(6):   # 6 shards so each process has two
    _write(many / f"p{k}.jsonl", docs[k::6])
  one, three = tmp_path / "one", tmp_path / "three"
  assert dedup.main(["--input", str(many), "--output", str(one)]) == 0
  logs = [tmp_path / f"p{i}.log" for i in range(3)]   # files: no process waits on a full pipe
  procs = []
  for i, log in enumerate(logs):
    with open(log, "w") as f:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "data_pipeline.dedup", "--input", str(many), "--output",
           str(three), "--num-processes", "3", "--process-id", str(i)],
          cwd=REPO, stdout=f, stderr=subprocess.STDOUT, text=True))
  try:
    for p in procs:
      p.wait(timeout=180)
  finally:
    for p in procs:
      p.kill()
  assert [p.returncode for p in procs] == [0, 0, 0], [log.read_text()[-800:] for log in logs]
  files = sorted(q.relative_to(one) for q in one.rglob("*") if q.is_file() and q.name != "run.json")
  assert files == sorted(q.relative_to(three) for q in three.rglob("*")
                         if q.is_file() and q.name != "run.json")
  assert all((one / f).read_bytes() == (three / f).read_bytes() for f in files)
  alone = subprocess.run([sys.executable, "-m", "data_pipeline.dedup", "--input", str(many),
                          "--output", str(tmp_path / "alone"), "--num-processes", "2",
                          "--process-id", "0", "--config.dedup.wait_timeout_s=1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
  assert alone.returncode != 0 and "(process 1)" in alone.stderr
  assert "--process-id 1" in alone.stderr
  with pytest.raises(SystemExit, match="--process-id 2 is not one of 0..1"):
    dedup.main(["--input", str(many), "--output", str(tmp_path / "x"), "--num-processes", "2",
                "--config.dedup.process_id=2"])
