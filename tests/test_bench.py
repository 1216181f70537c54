"""The benchmark scripts still run against the library they measure (acceptance spine-5 reads
bench/train_step.py's ratio; an interface change once broke it without a test noticing)."""

import importlib.util

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
