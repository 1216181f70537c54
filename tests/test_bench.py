"""The benchmark scripts still run against the library they measure (acceptance spine-5 reads
bench/train_step.py's ratio; an interface change once broke it without a test noticing)."""

import importlib.util
import json
import random

import pytest

from data_pipeline import shards
from swahili100 import config_lib

from conftest import REPO

TINY = ["--config.model.vocab_size=128", "--config.model.d_model=32",
        "--config.model.num_layers=1", "--config.model.num_heads=2",
        "--config.model.num_kv_heads=1", "--config.model.head_dim=16",
        "--config.model.mlp_dim=64", "--config.data.seq_len=16", "--config.data.batch_size=2"]


def _load(name):
  spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_train_step_bench_times_ours_and_torch_and_prints_the_ratio(capsys):
  bench = _load("train_step")
  assert bench.main(["--config", str(REPO / "configs/debug.py"), "--reps", "2", *TINY]) == 0
  out = capsys.readouterr().out
  lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
  for who in ("ours", "torch"):
    assert float(lines[who].split()[1]) > 0, out   # ms/step
    assert "page faults" in lines[who] and "system" in lines[who], out
  ratio = out.split("ours/torch throughput:")[1].strip()
  assert ratio.endswith("x") and float(ratio[:-1]) > 0, out
  assert "optimizer (adamw) + clipping:" in out


def test_matmul_bench_checks_each_gemm_against_torch_and_prints_ratios(capsys):
  bench = _load("matmul")
  gemms = bench.gemms(config_lib.apply_overrides(
      config_lib.load(str(REPO / "configs/debug.py")), TINY))
  # one block's 5 projections and the head: forward, input and weight gradient (+ the step's form)
  assert len(gemms) == 19 and gemms["head dw"][:2] == ((32, 32), (32, 128))
  assert sum(g[3] for g in gemms.values()) == 3 * 7 + 3  # 7 matrices in the one block, tied head
  assert bench.main(["--config", str(REPO / "configs/debug.py"), "--reps", "2", *TINY]) == 0
  out = capsys.readouterr().out
  ratios = [float(ln.rsplit(":", 1)[1].strip()[:-1]) for ln in out.splitlines()
            if "ours/torch" in ln]
  assert len(ratios) == 20 and all(r > 0 for r in ratios), out


def test_accelerator_bench_tiny_prints_both_optimizers_and_the_attention_check(capsys):
  """`bench/accelerator.py --tiny`: the acceptance check's command, in-process, on the CPU."""
  assert _load("accelerator").main(["--tiny"]) == 0
  out = capsys.readouterr().out
  result = json.loads(out.strip().splitlines()[-1])
  for name in ("adamw", "muon"):
    for key in ("step_ms", "tokens_per_s", "mfu", "optimizer_ms"):
      assert result[name][key] > 0, (name, key, out)
  assert result["muon"]["minus_adamw_ms"] == pytest.approx(
      result["muon"]["step_ms"] - result["adamw"]["step_ms"])
  assert result["attention_maxdiff"] <= 1e-4, out
  assert result["attention"]["path"].startswith("splash") and result["device"]["platform"] == "cpu"


def test_dedup_datatrove_bench_both_sides_find_the_planted_duplicates(tmp_path, capsys):
  """bench/dedup_datatrove.py on 280 generated documents (2 shards) of which 40 are planted
  copies (20 exact, 20 with the last word changed): ours and datatrove remove the same 40."""
  pytest.importorskip("datatrove")
  pytest.importorskip("spacy")   # datatrove's Swahili word tokenizer
  bench = _load("dedup_datatrove")
  rng = random.Random(0)
  vocab = ["".join(rng.choice("abcdefghijklmnoprstuvwyz") for _ in range(rng.randint(4, 9)))
           for _ in range(800)]
  docs = [{"id": f"d{i}", "text": " ".join(rng.choice(vocab) for _ in range(150)),
           "source": "test"} for i in range(240)]
  copies = [{**d, "id": d["id"] + "-exact"} for d in docs[:20]]
  copies += [{**d, "id": d["id"] + "-near", "text": d["text"].rsplit(" ", 1)[0] + " mwisho"}
             for d in docs[20:40]]
  src = tmp_path / "src"
  for k, part in enumerate((docs[:120], docs[120:] + copies)):
    with shards.ShardWriter(src / f"part-{k:05d}.jsonl.gz") as w:
      for d in part:
        w.write(d)
  assert bench.main(["--data", str(src), "--dup-rate", "0", "--workers", "2",
                     "--keep", str(tmp_path / "run")]) == 0
  out = capsys.readouterr().out
  res = json.loads(out.strip().splitlines()[-1])
  removed = res["removed"]
  assert (removed["ours"], removed["datatrove"], removed["both"]) == (40, 40, 40), out
  assert removed["ours_by_reason"] == {"exact_duplicate": 20, "near_duplicate": 20}, out
  assert res["clustered"]["jaccard"] == 1.0 and res["bands"] * res["rows"] <= res["num_perm"]
  for what in ("time", "peak memory"):
    ratio = out.split(f"ours/datatrove {what}:")[1].split()[0]
    assert ratio.endswith("x") and float(ratio[:-1]) > 0, out
  # the planting of the full benchmark: copies land in the shards, one in five exact
  planted = bench.make_corpus(src, tmp_path / "planted", 0, 0.5, 0)
  ids = {d["id"] for _, d in shards.iter_docs(tmp_path / "planted")}
  assert len(ids) == 280 + len(planted) and {c for _, c in planted} <= ids and len(planted) > 100
