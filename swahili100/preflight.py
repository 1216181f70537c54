"""Preflight, the worker side: prove a slice can train before training starts.

Run on every worker of a slice at once (launch/tpu_vm.py does, with `--worker=i` for each):

    python -m swahili100.preflight --workdir gs://B/runs/base \
        --coordinator-address 10.0.0.2:8477 --num-processes 4 --process-id 2 \
        --expect-devices 16 --expect-local-devices 4 \
        --records gs://B/data/processed --tokenizer gs://B/tokenizer/swahili_bpe.json

The three distributed values can also be spelled like the trainer's config keys
(`--config.mesh.coordinator_address=...`, `--config.mesh.num_processes=...`,
`--config.mesh.process_id=...`); "" / 0 / -1 mean auto-detect, as there.

Checks, each failure naming the worker and what differs:
  - every process registered (jax.distributed, bounded by --timeout) and runs the same Python,
    jax, jaxlib and libtpu as worker 0, on the same platform;
  - jax.process_count() and jax.device_count() are what the slice should have, and a cross-host
    all-gather returns every process's index (the collectives work);
  - each process writes, then reads back, `<workdir>/preflight/process-<i>.json`, and reads the
    records manifest and the tokenizer, through etils.epath (local paths or gs://).

Every process prints one JSON line, the verdict (`"preflight": "ok"` or `"failed"`, with the
problems); exit 0 only when every check passed everywhere. CPU collectives are switched to gloo,
as for training, so CPU processes on one machine can all-gather (the test does this).
"""

import argparse
import json
import os
import platform
import socket
import sys
import time
import uuid
from importlib import metadata

import jax
import numpy as np
from etils import epath
from jax._src import distributed as jax_distributed

from swahili100 import distributed, fs

VERSION_KEYS = ("python", "jax", "jaxlib", "libtpu", "platform")
KV_PREFIX = "swahili100/preflight"


def parse_args(argv: list[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="swahili100 preflight", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="the run's workdir; gets a preflight/ folder")
  p.add_argument("--coordinator-address", "--config.mesh.coordinator_address",
                 dest="coordinator_address", default="", help="host:port of process 0 ('' = auto)")
  p.add_argument("--num-processes", "--config.mesh.num_processes", dest="num_processes",
                 type=int, default=0, help="processes in the job (0 = auto)")
  p.add_argument("--process-id", "--config.mesh.process_id", dest="process_id", type=int,
                 default=-1, help="this process's index (-1 = auto)")
  p.add_argument("--records", default="", help="records folder to read-check (its manifest.json)")
  p.add_argument("--tokenizer", default="", help="tokenizer file to read-check")
  p.add_argument("--expect-devices", type=int, default=0,
                 help="jax.device_count() the slice should have (0 = do not check)")
  p.add_argument("--expect-local-devices", type=int, default=0,
                 help="jax.local_device_count() every host should have (0 = do not check)")
  p.add_argument("--timeout", type=int, default=300,
                 help="seconds to wait for every process to register and report")
  return p.parse_args(argv)


def _version(dist: str) -> str | None:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return None


def initialize(args) -> bool:
  """jax.distributed as training starts it (swahili100.distributed: explicit values, or the
  cluster's when they are left empty); returns whether it started."""
  return distributed.initialize({"coordinator_address": args.coordinator_address,
                                 "num_processes": args.num_processes,
                                 "process_id": args.process_id,
                                 "init_timeout_s": args.timeout})


def storage_checks(args, process_id: int) -> dict:
  """{'write': 'ok' | error, 'records': ..., 'tokenizer': ...} for this process."""
  out = {}
  try:
    fs.probe(args.workdir)   # write, read back and delete: what train and align do first
    folder = epath.Path(args.workdir) / "preflight"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"process-{process_id}.json"
    text = json.dumps({"process_id": process_id, "host": socket.gethostname(),
                       "nonce": uuid.uuid4().hex, "time": time.time()})
    path.write_text(text)
    back = path.read_text()
    out["write"] = "ok" if back == text else f"read back {len(back)} chars, wrote {len(text)}"
  except Exception as e:  # any failure is a finding, reported with the worker's name
    out["write"] = _error(e, args.workdir)
  if args.records:
    try:
      json.loads((epath.Path(args.records) / "manifest.json").read_text())
      out["records"] = "ok"
    except Exception as e:
      out["records"] = _error(e, args.records)
  if args.tokenizer:
    try:
      with epath.Path(args.tokenizer).open("rb") as f:
        f.read(1024)
      out["tokenizer"] = "ok"
    except Exception as e:
      out["tokenizer"] = _error(e, args.tokenizer)
  return out


def _error(e: Exception, path: str) -> str:
  msg = f"{type(e).__name__}: {e}"
  if isinstance(e, ImportError) and path.startswith("gs://"):
    msg += " (install gcsfs in the worker's venv: launch/tpu_vm.py setup does)"
  return msg


def local_report(storage: dict) -> dict:
  import jaxlib
  return {"process_id": jax.process_index(), "host": socket.gethostname(),
          "python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "libtpu": _version("libtpu"),
          "platform": jax.devices()[0].platform, "process_count": jax.process_count(),
          "devices": jax.device_count(), "local_devices": jax.local_device_count(),
          "storage": storage}


def exchange(report: dict, timeout_s: int) -> list[dict]:
  """Every process's report, in process order, through the coordinator's key-value store."""
  if jax.process_count() == 1:
    return [report]
  client = jax_distributed.global_state.client
  client.key_value_set(f"{KV_PREFIX}/{report['process_id']}", json.dumps(report))
  reports = []
  for i in range(jax.process_count()):
    try:
      reports.append(json.loads(client.blocking_key_value_get(f"{KV_PREFIX}/{i}",
                                                              timeout_s * 1000)))
    except Exception as e:  # a timeout: that worker never got this far
      reports.append({"process_id": i, "missing": f"{type(e).__name__}: {e}"})
  return reports


def collective_check() -> str:
  """'ok' when an all-gather over every process returns each process's index."""
  if jax.process_count() == 1:
    return "ok"
  try:
    got = distributed.allgather(np.int32(jax.process_index())).reshape(-1)
  except Exception as e:  # reported, with the worker's name, by the caller
    return f"{type(e).__name__}: {e}"
  want = np.arange(jax.process_count())
  return "ok" if np.array_equal(got, want) else f"all-gather returned {got.tolist()}, " \
                                                 f"expected {want.tolist()}"


def compare(reports: list[dict], *, num_processes: int = 0, expect_devices: int = 0,
            expect_local_devices: int = 0) -> list[str]:
  """The problems, each naming the worker and what differs (empty when all agree)."""
  problems = []
  present = [r for r in reports if "missing" not in r]
  for r in reports:
    if "missing" in r:
      problems.append(f"worker {r['process_id']} did not report: {r['missing']}")
  if not present:
    return problems
  ref = present[0]
  for r in present[1:]:
    for key in VERSION_KEYS:
      if r.get(key) != ref.get(key):
        problems.append(f"worker {r['process_id']} ({r.get('host')}) has {key} {r.get(key)} "
                        f"but worker {ref['process_id']} ({ref.get('host')}) has {ref.get(key)}")
  count = ref["process_count"]
  if num_processes and count != num_processes:
    problems.append(f"jax.process_count() is {count} but --num-processes is {num_processes}")
  if len(reports) != count:
    problems.append(f"{len(reports)} reports for {count} processes")
  devices = ref["devices"]
  if expect_devices and devices != expect_devices:
    problems.append(f"expected {expect_devices} devices (--expect-devices) but "
                    f"jax.device_count() is {devices}")
  if sum(r["local_devices"] for r in present) != devices and len(present) == count:
    problems.append(f"local device counts {[r['local_devices'] for r in present]} do not add "
                    f"up to jax.device_count() = {devices}")
  for r in present:
    if expect_local_devices and r["local_devices"] != expect_local_devices:
      problems.append(f"worker {r['process_id']} ({r['host']}) has {r['local_devices']} local "
                      f"devices, expected {expect_local_devices} (--expect-local-devices)")
    for what, status in r.get("storage", {}).items():
      if status != "ok":
        problems.append(f"worker {r['process_id']} ({r['host']}) {what} check failed: {status}")
  return problems


def main(argv: list[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    distributed = initialize(args)
  except Exception as e:  # no coordinator, wrong address, a worker that never came up
    print(json.dumps({"preflight": "failed", "process_id": args.process_id,
                      "problems": [f"worker {args.process_id}: jax.distributed.initialize("
                                   f"{args.coordinator_address!r}, {args.num_processes}) "
                                   f"failed: {type(e).__name__}: {e}"]}), flush=True)
    return 1
  try:
    report = local_report(storage_checks(args, jax.process_index()))
    reports = exchange(report, args.timeout)
    problems = compare(reports, num_processes=args.num_processes,
                       expect_devices=args.expect_devices,
                       expect_local_devices=args.expect_local_devices)
    if args.process_id >= 0 and report["process_id"] != args.process_id:
      problems.append(f"worker {args.process_id} ({report['host']}) got jax.process_index() "
                      f"{report['process_id']}")
    if all("missing" not in r for r in reports):  # only then can a collective finish
      status = collective_check()
      if status != "ok":
        problems.append(f"worker {report['process_id']} ({report['host']}) cross-host "
                        f"all-gather failed: {status}")
    verdict = {"preflight": "failed" if problems else "ok", "process_id": report["process_id"],
               "num_processes": report["process_count"], "device_count": report["devices"],
               "versions": {k: report[k] for k in VERSION_KEYS}, "problems": problems,
               "workers": reports}
    print(json.dumps(verdict), flush=True)
    for problem in problems:
      print(f"preflight: {problem}", file=sys.stderr)
    return 1 if problems else 0
  finally:
    if distributed:
      jax.distributed.shutdown()


if __name__ == "__main__":
  sys.exit(main())
