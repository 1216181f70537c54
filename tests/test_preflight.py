"""swahili100.preflight for real: two OS processes on this CPU rendezvous through
jax.distributed (coordinator on 127.0.0.1), exchange versions, all-gather over gloo and write to a
local workdir; plus the verdicts that must fail."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from swahili100 import preflight

from conftest import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT_S = 120


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(n: int, extra: list[str], workdir) -> list[tuple[int, dict, str]]:
  """(exit code, JSON verdict, stderr) of each of n preflight processes.

  Output goes to files, not pipes: a process blocked on a full pipe that nobody reads yet would
  never reach jax.distributed.shutdown, and the others would wait for it there."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2))
  env.pop("TPU_WORKER_HOSTNAMES", None)
  port = free_port()
  logs = Path(str(workdir) + ".logs")
  logs.mkdir(parents=True, exist_ok=True)
  procs = []
  try:
    for i in range(n):
      with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "swahili100.preflight", "--workdir", str(workdir),
             "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(n),
             "--process-id", str(i), "--timeout", "60", *extra],
            cwd=REPO, env=env, text=True, stdout=out, stderr=err))
    results = []
    for i, p in enumerate(procs):
      try:
        p.wait(timeout=WAIT_S)
      except subprocess.TimeoutExpired:   # fail with every process's log, never hang
        pytest.fail(f"preflight process {i} still running after {WAIT_S} s:\n" + "\n".join(
            f"--- process {j} stderr ---\n{(logs / f'{j}.err').read_text()[-3000:]}"
            f"\n--- process {j} stdout ---\n{(logs / f'{j}.out').read_text()[-1500:]}"
            for j in range(n)))
      out, err = (logs / f"{i}.out").read_text(), (logs / f"{i}.err").read_text()
      # gloo chats on stdout too, and may write into the verdict's line: find the verdict itself.
      verdicts = [json.JSONDecoder().raw_decode(ln[ln.index('{"preflight"'):])[0]
                  for ln in out.splitlines() if '{"preflight"' in ln]
      results.append((p.returncode, verdicts[-1] if verdicts else {}, err + out))
    return results
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=10)


@pytest.fixture
def data(tmp_path):
  records = tmp_path / "records"
  records.mkdir()
  (records / "manifest.json").write_text(json.dumps({"dtype": "uint16"}))
  tokenizer = tmp_path / "swahili_bpe.json"
  tokenizer.write_text("{}")
  return ["--records", str(records), "--tokenizer", str(tokenizer)]


def test_two_processes_agree(tmp_path, data):
  workdir = tmp_path / "run"
  results = run_processes(2, ["--expect-devices", "4", "--expect-local-devices", "2", *data],
                          workdir)
  for i, (code, verdict, err) in enumerate(results):
    assert code == 0, err
    assert verdict["preflight"] == "ok" and verdict["problems"] == []
    assert (verdict["process_id"], verdict["num_processes"], verdict["device_count"]) == (i, 2, 4)
    assert verdict["versions"]["platform"] == "cpu"
    assert [w["storage"] for w in verdict["workers"]] == \
        [{"write": "ok", "records": "ok", "tokenizer": "ok"}] * 2
  written = sorted(os.listdir(workdir / "preflight"))
  assert written == ["process-0.json", "process-1.json"]
  assert json.loads((workdir / "preflight" / "process-1.json").read_text())["process_id"] == 1


def test_wrong_device_count_fails_on_every_worker(tmp_path):
  results = run_processes(2, ["--expect-devices", "8"], tmp_path / "run")
  for code, verdict, err in results:
    assert code == 1
    assert verdict["preflight"] == "failed"
    assert "expected 8 devices (--expect-devices) but jax.device_count() is 4" in err
    assert verdict["problems"] == ["expected 8 devices (--expect-devices) but "
                                   "jax.device_count() is 4"]


def test_unreadable_records_name_the_worker(tmp_path, capsys):
  code = preflight.main(["--workdir", str(tmp_path / "run"), "--num-processes", "1",
                         "--records", str(tmp_path / "missing")])
  verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert code == 1 and len(verdict["problems"]) == 1
  assert verdict["problems"][0].startswith("worker 0 (") and "records check failed" in \
      verdict["problems"][0] and "manifest.json" in verdict["problems"][0]


def report(i, **changes):
  r = {"process_id": i, "host": f"w{i}", "python": "3.11.9", "jax": "0.10.2", "jaxlib": "0.10.2",
       "libtpu": "0.0.42", "platform": "tpu", "process_count": 2, "devices": 8,
       "local_devices": 4, "storage": {"write": "ok"}}
  r.update(changes)
  return r


def test_compare_names_the_worker_and_what_differs():
  assert preflight.compare([report(0), report(1)], num_processes=2, expect_devices=8,
                           expect_local_devices=4) == []
  problems = preflight.compare([report(0), report(1, jax="0.4.30", python="3.10.12")])
  assert problems == ["worker 1 (w1) has python 3.10.12 but worker 0 (w0) has 3.11.9",
                      "worker 1 (w1) has jax 0.4.30 but worker 0 (w0) has 0.10.2"]
  problems = preflight.compare([report(0), report(1, storage={"write": "ImportError: gcsfs"})])
  assert problems == ["worker 1 (w1) write check failed: ImportError: gcsfs"]
  problems = preflight.compare([report(0), {"process_id": 1, "missing": "DEADLINE_EXCEEDED"}])
  assert problems == ["worker 1 did not report: DEADLINE_EXCEEDED"]
  assert preflight.compare([report(0), report(1)], num_processes=4)[0] == \
      "jax.process_count() is 2 but --num-processes is 4"
