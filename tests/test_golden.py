"""Golden metrics: the numerics of the debug config, pinned (as nanodo pins its own).

Loss and gradient norm after 1 and 10 steps of configs/debug.py (warmup 5, 10 steps) on the
fixed tiny records of conftest.py, through the real engine, in a `swahili100 train` process with
XLA's default flags (the other tests compile with conftest.FAST_COMPILE_XLA_FLAGS). A failure means a change altered
what the model computes: the model, the loss, the optimizer, the init, the data order or the
packing. If that change is deliberate, say why in docs/RESEARCH.md and re-pin GOLDEN with the
values the failure prints; if not, it is a bug.
"""

import json
import os
import subprocess
import sys

from conftest import REPO

BIN = os.path.join(os.path.dirname(sys.executable), "swahili100")

# step: (loss, grad_norm), measured on 2026-12-01 (JAX 0.10.2, XLA:CPU, float32).
GOLDEN = {1: (5.9759368896484375, 1.5367944240570068),
          10: (4.042481899261475, 1.2907304763793945)}


def test_debug_config_numerics_are_pinned(tiny_records, tmp_path):
  records_dir, tokenizer, vocab = tiny_records
  flags = [f"--config.{key}={value}" for key, value in {
      "model.vocab_size": vocab, "data.records_dir": records_dir, "data.tokenizer": tokenizer,
      "data.prefetch": 0, "optim.warmup_steps": 5, "train.num_steps": 10, "train.log_every": 1,
      "train.eval_every": 0, "train.eval_batches": 1, "train.checkpoint_every": 10}.items()]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  r = subprocess.run([BIN, "train", "--config", "configs/debug.py", "--workdir",
                      str(tmp_path / "run"), *flags], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(tmp_path, "run", "logs", "training.jsonl")) as f:
    got = {r["step"]: (r["loss"], r["grad_norm"]) for r in map(json.loads, f) if "loss" in r}
  for step, (loss, gnorm) in GOLDEN.items():
    new_loss, new_gnorm = got[step]
    ok = abs(new_loss - loss) <= 2e-5 * loss and abs(new_gnorm - gnorm) <= 2e-4 * gnorm
    assert ok, (
        f"step {step}: loss {new_loss!r} grad_norm {new_gnorm!r}, pinned {loss!r} {gnorm!r}. "
        "The debug config's numerics changed. If deliberate, record why in docs/RESEARCH.md "
        f"and re-pin GOLDEN = {{1: {got[1]!r}, 10: {got[10]!r}}} in tests/test_golden.py.")
