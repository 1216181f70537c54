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


def _sw(env, *args, timeout=300, **kw):
  return subprocess.run([BIN, *args], cwd=REPO, env={**os.environ, **env, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=timeout, **kw)


def _train_until(env, workdir, flags, line: str, log, timeout: float) -> subprocess.Popen:
  """`swahili100 train` started and running until `line` is logged (the caller kills it)."""
  p = subprocess.Popen([BIN, "train", "--config", "configs/debug.py", "--workdir", workdir,
                        *flags], cwd=REPO, env={**os.environ, **env, "JAX_PLATFORMS": "cpu"},
                       stdout=open(log, "w"), stderr=subprocess.STDOUT)
  deadline = time.time() + timeout
  while time.time() < deadline and line not in log.read_text():
    if p.poll() is not None:
      raise AssertionError(log.read_text()[-2000:])
    time.sleep(0.05)
  return p


def _train_until_sigterm(env, workdir, flags, line: str, log, timeout: float) -> None:
  """`swahili100 train` until `line` is logged, then SIGTERM: it must save and exit 0."""
  p = _train_until(env, workdir, flags, line, log, timeout)
  try:
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=timeout) == 0, log.read_text()[-3000:]
  finally:
    if p.poll() is None:
      p.kill()


def test_training_through_a_flaky_bucket_finishes_resumes_evaluates_and_exports(
    bucket, tiny_records, tmp_path):
  """Every path a gs:// URL (records, tokenizer, workdir, outputs), and a seeded 2 % of the
  requests to the bucket answered 503 or 429 or reset: gcsfs's and tensorstore's own retries
  carry training (with checkpoints), a SIGTERM and its resume, evaluation and export through;
  the log holds one trajectory equal to a local run's bit for bit."""
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
  with fault_proxy.serve(bucket, rate=0.01, seed=0) as flaky:
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
  saved = [int(n) for n in fs.listdir(f"{workdir}/checkpoints") if n.isdigit()]
  assert max(saved) == 16
  rows = [row for row in metrics.read_log(workdir) if "loss" in row]
  want = {row["step"]: row["loss"] for row in metrics.read_log(local) if "loss" in row}
  assert [row["step"] for row in rows] == list(range(1, 17))   # one trajectory
  assert {row["step"]: row["loss"] for row in rows} == want
  assert any(n.startswith("events.out.tfevents") for n in fs.listdir(f"{workdir}/logs"))
  assert json.loads(fs.read_text(f"{workdir}/config.json"))["data"]["records_dir"] == \
      "gs://bkt/data/records"
  report = json.loads(fs.read_text("gs://bkt/eval/flaky.json"))
  assert 0 < report["tasks"]["bpb"]["bpb"] < 10, report
  names = fs.listdir("gs://bkt/export/flaky")
  assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(names)
  assert fs.Path("gs://bkt/export/flaky/model.safetensors").stat().length > 10_000


def test_a_bucket_that_stops_answering_stops_the_run_in_bounded_time_and_it_resumes(
    bucket, tiny_records, tmp_path):
  """From step 9 on every request to the bucket is answered 503, past every client's retries:
  the run stops with exit 3 within save_timeout_s and one cycle of gcsfs's retries (~35 s),
  with one message naming the last good checkpoint and the command; once the bucket answers
  again that command resumes from the checkpoint and finishes."""
  from swahili100 import checkpoint, fs
  vocab = tiny_records[2]
  def remote(steps):
    return tiny_flags("gs://bkt/data/records", "gs://bkt/tokenizer/swahili_bpe.json", vocab,
                      **{"train.num_steps": steps, "train.checkpoint_every": 4,
                         "train.save_timeout_s": 5})
  workdir = "gs://bkt/runs/outage"
  log = tmp_path / "outage.log"
  with fault_proxy.serve(bucket, rate=0.0, seed=0) as flaky:
    p = _train_until(flaky.env, workdir, remote(400), "step 9/400", log, timeout=240)
    try:
      flaky.proxy.outage, down = "503", time.time()
      code = p.wait(timeout=240)
      stopped = time.time() - down
    finally:
      if p.poll() is None:
        p.kill()
    out = log.read_text()
    assert code == checkpoint.SAVE_FAILED, out[-3000:]
    assert stopped < 5 + 2 * 40, stopped   # save_timeout_s, then gcsfs's retries at most twice
    assert "Traceback" not in out, out[-3000:]
    tail = out[out.index("ERROR:"):]
    good = int(tail.split("Last good checkpoint: ")[1].split("/checkpoints/")[1].split(".")[0])
    assert good >= 4 and good % 4 == 0 and "swahili100 train --config" in tail, tail
    print(f"stopped {stopped:.1f} s after the outage began; {flaky.injected}")

    flaky.proxy.outage = None   # the bucket is back: the same command resumes
    r = _sw(flaky.env, "train", "--config", "configs/debug.py", "--workdir", workdir,
            *remote(good + 8), timeout=300)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  # from that checkpoint, or from the one whose save was under way and ended before the outage
  resumed = int(r.stdout.split(f"resumed from {workdir}/checkpoints/")[1].split()[0])
  assert good <= resumed <= good + 4, (good, r.stdout[-2000:])
  assert max(int(n) for n in fs.listdir(f"{workdir}/checkpoints") if n.isdigit()) == good + 8
