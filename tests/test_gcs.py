"""Every path a gs:// URL: train -> SIGTERM -> resume -> evaluate -> export against a local GCS
emulator (tests/gcs_emulator.py), with the real CLI commands."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_flags

gcs_emulator = pytest.importorskip("gcs_emulator")
fault_proxy = pytest.importorskip("fault_proxy")
BIN = os.path.join(os.path.dirname(sys.executable), "swahili100")


@pytest.fixture(scope="module")
def bucket(tiny_records):
  with gcs_emulator.serve("bkt") as env:
    from swahili100 import fs
    records_dir, tokenizer, _ = tiny_records
    for name in os.listdir(records_dir):
      with open(os.path.join(records_dir, name), "rb") as f:
        fs.Path("gs://bkt/data/records", name).write_bytes(f.read())
    with open(tokenizer, "rb") as f:
      fs.Path("gs://bkt/tokenizer/swahili_bpe.json").write_bytes(f.read())
    yield env


def _overrides(vocab, records, tokenizer, steps):
  return tiny_flags(records, tokenizer, vocab, **{"train.num_steps": steps,
                                                  "train.checkpoint_every": 1000})


def _sw(env, *args, timeout=300, **kw):
  return subprocess.run([BIN, *args], cwd=REPO, env={**os.environ, **env, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=timeout, **kw)


def _train_until_sigterm(env, workdir, flags, line: str, log, timeout: float) -> None:
  """`swahili100 train` until `line` is logged, then SIGTERM: it must save and exit 0."""
  p = subprocess.Popen([BIN, "train", "--config", "configs/debug.py", "--workdir", workdir,
                        *flags], cwd=REPO, env={**os.environ, **env, "JAX_PLATFORMS": "cpu"},
                       stdout=open(log, "w"), stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + timeout
    while time.time() < deadline and line not in log.read_text():
      assert p.poll() is None, log.read_text()[-2000:]
      time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=timeout) == 0, log.read_text()[-3000:]
  finally:
    if p.poll() is None:
      p.kill()


def test_train_sigterm_resume_evaluate_export_all_on_gcs(bucket, tiny_records, tmp_path):
  from swahili100 import fs, metrics
  vocab = tiny_records[2]
  remote = _overrides(vocab, "gs://bkt/data/records", "gs://bkt/tokenizer/swahili_bpe.json", 30)
  workdir = "gs://bkt/runs/tiny"
  # the same run on local files, uninterrupted: the reference trajectory
  local = str(tmp_path / "local")
  r = _sw(bucket, "train", "--config", "configs/debug.py", "--workdir", local,
          *_overrides(vocab, tiny_records[0], tiny_records[1], 30))
  assert r.returncode == 0, r.stderr[-2000:]

  log = tmp_path / "cut.log"
  _train_until_sigterm(bucket, workdir, remote, "step 8/30", log, timeout=240)
  saved = [int(n) for n in fs.listdir(f"{workdir}/checkpoints") if n.isdigit()]
  assert len(saved) == 1 and 8 <= saved[0] < 30
  r = _sw(bucket, "train", "--config", "configs/debug.py", "--workdir", workdir, *remote)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"resumed from {workdir}/checkpoints/{saved[0]}" in r.stdout

  # one trajectory in the gs:// log, equal to the local run's bit for bit; TensorBoard beside it
  rows = [row for row in metrics.read_log(workdir) if "loss" in row]
  want = {row["step"]: row["loss"] for row in metrics.read_log(local) if "loss" in row}
  assert [row["step"] for row in rows] == list(range(1, 31))
  assert {row["step"]: row["loss"] for row in rows} == want
  assert any(n.startswith("events.out.tfevents") for n in fs.listdir(f"{workdir}/logs"))
  assert json.loads(fs.read_text(f"{workdir}/config.json"))["data"]["records_dir"] == \
      "gs://bkt/data/records"

  r = _sw(bucket, "evaluate", "--checkpoint", workdir, "--tasks", "bpb", "--output",
          "gs://bkt/eval/tiny.json")
  assert r.returncode == 0, r.stderr[-2000:]
  report = json.loads(fs.read_text("gs://bkt/eval/tiny.json"))
  assert 0 < report["tasks"]["bpb"]["bpb"] < 10, (report, r.stdout[-1500:], r.stderr[-1500:])

  r = _sw(bucket, "export", "--checkpoint", workdir, "--format", "hf", "--output",
          "gs://bkt/export/hf")
  assert r.returncode == 0, r.stderr[-2000:]
  names = fs.listdir("gs://bkt/export/hf")
  assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(names)
  assert fs.Path("gs://bkt/export/hf/model.safetensors").stat().length > 10_000


def test_training_through_a_flaky_bucket_finishes_resumes_evaluates_and_exports(
    bucket, tiny_records, tmp_path):
  """A seeded 2 % of the requests to the bucket are answered 503 or 429 or reset: gcsfs's and
  tensorstore's own retries carry training (with checkpoints), a SIGTERM and its resume,
  evaluation and export through; the losses equal a local run's bit for bit."""
  from swahili100 import fs, metrics
  vocab = tiny_records[2]
  steps = {"train.num_steps": 16, "train.checkpoint_every": 4}
  local = str(tmp_path / "local")
  r = _sw(bucket, "train", "--config", "configs/debug.py", "--workdir", local,
          *tiny_flags(tiny_records[0], tiny_records[1], vocab, **steps))
  assert r.returncode == 0, r.stderr[-2000:]
  remote = tiny_flags("gs://bkt/data/records", "gs://bkt/tokenizer/swahili_bpe.json", vocab,
                      **steps)
  workdir = "gs://bkt/runs/flaky"
  with fault_proxy.serve(bucket, rate=0.02, seed=0) as flaky:
    log = tmp_path / "cut.log"
    _train_until_sigterm(flaky.env, workdir, remote, "step 6/16", log, timeout=300)
    r = _sw(flaky.env, "train", "--config", "configs/debug.py", "--workdir", workdir, *remote,
            timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    r = _sw(flaky.env, "evaluate", "--checkpoint", workdir, "--tasks", "bpb", "--output",
            "gs://bkt/eval/flaky.json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _sw(flaky.env, "export", "--checkpoint", workdir, "--format", "hf", "--output",
            "gs://bkt/export/flaky", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    injected = flaky.injected
    print("injected", injected, "of", flaky.proxy.requests, "requests")
  assert sum(injected.values()) >= 10 and len(injected) == 3, injected
  rows = [row for row in metrics.read_log(workdir) if "loss" in row]
  want = {row["step"]: row["loss"] for row in metrics.read_log(local) if "loss" in row}
  assert {row["step"]: row["loss"] for row in rows} == want
  assert "model.safetensors" in fs.listdir("gs://bkt/export/flaky")
