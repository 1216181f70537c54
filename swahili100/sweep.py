"""Phase 8, ablations: a grid of `swahili100 train` runs, several at once, compared and plotted.

    swahili100 sweep --config configs/debug.py --workdir runs/sweep \
        --grid optim.lr=1e-4,3e-4,1e-3 --grid data.batch_size=8,16 [--parallel 2] [--dry-run] \
        -- --config.train.num_steps=200
    swahili100 sweep ... --grid data.batch_size=8,16,32 --tokens 2e6   # same token budget

Every combination trains in `<workdir>/<name>` (name from its overrides, e.g.
`optim.lr=3e-4,data.batch_size=16`) as `python -m swahili100.cli train ...`, its output in
`<workdir>/<name>/sweep.log`. A run is finished when `checkpoints/<train.num_steps>/` exists or
the sweep marked it DONE; finished runs are skipped and interrupted ones rerun with the same
command, which resumes them from their newest checkpoint, so a killed sweep is continued by
running it again. `--parallel N` runs N at once on disjoint device subsets of this host (CPU
cores, GPUs or TPU chips). The comparison goes to `<workdir>/sweep.csv` and `sweep.md`, best
first, and the plots to `<workdir>/plots/`: `curves.png` (loss and eval bits-per-byte against
tokens seen) and `<key>.png` (final metrics against each swept value).
"""

import argparse
import concurrent.futures
import csv
import glob
import io
import itertools
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from etils import epath

from swahili100 import config_lib, fs, metrics, report

COLUMNS = ("run", "steps", "tokens_seen", "final_loss", "eval_loss", "eval_bpb", "tokens_per_s")
# Chips per process -> TPU_CHIPS_PER_PROCESS_BOUNDS (the chip grid one process owns).
TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1", 8: "2,4,1"}
TPU_BASE_PORT = 8476  # libtpu's default process port; each concurrent run takes the next one


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
  """['optim.lr=1e-4,3e-4'] -> [('optim.lr', ['1e-4', '3e-4'])]."""
  grid = []
  for item in items:
    key, sep, values = item.partition("=")
    if not sep or not values:
      raise SystemExit(f"sweep: --grid {item!r} must look like section.key=v1,v2")
    grid.append((key, values.split(",")))
  return grid


def combinations(grid):
  keys = [k for k, _ in grid]
  for values in itertools.product(*(v for _, v in grid)):
    yield dict(zip(keys, values))


def run_name(overrides: dict[str, str]) -> str:
  return ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"


def _config_flags(extra: list[str]) -> list[str]:
  """The `--config.k=v` / `--config.k v` flags among the extra train flags."""
  flags, i = [], 0
  while i < len(extra):
    if extra[i].startswith("--config."):
      take = 1 if "=" in extra[i] or i + 1 >= len(extra) else 2
      flags += extra[i:i + take]
      i += take
    else:
      i += 1
  return flags


def resolve(config: str, overrides: dict[str, str], extra: list[str]):
  """The run's config; also refuses unknown keys before anything is launched."""
  return config_lib.apply_overrides(
      config_lib.load(config), [f"--config.{k}={v}" for k, v in overrides.items()]
      + _config_flags(extra))


def budget_flags(cfg, tokens: float, warmup_fraction: float) -> list[str]:
  """train.num_steps (and warmup) that give the run `tokens` training tokens, whatever its
  batch and sequence length: runs of an ablation then see the same data budget."""
  steps = max(1, round(tokens / (cfg.data.batch_size * cfg.data.seq_len)))
  return [f"--config.train.num_steps={steps}",
          f"--config.optim.warmup_steps={max(1, round(warmup_fraction * steps))}"]


def finished(run_dir, steps: int) -> bool:
  run_dir = epath.Path(run_dir)
  return (run_dir / "DONE").exists() or (run_dir / "checkpoints" / str(steps)).exists()


# ---------------------------------------------------------------- devices


def detect(platform: str = "auto") -> tuple[str, int]:
  """(platform, devices on this host), found without initializing JAX: a parent that
  initialized the accelerator would hold it and starve the runs."""
  if platform in ("auto", "tpu"):
    # TPU chips are /dev/accel* (v2-v4, v5e) or numbered VFIO groups (v5p, v6e).
    chips = glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")
    if chips or platform == "tpu":
      return "tpu", len(chips)
  if platform in ("auto", "gpu"):
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
      return "gpu", len(visible.split(","))
    if shutil.which("nvidia-smi"):
      out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
      count = sum(line.startswith("GPU ") for line in out.splitlines())
      if count or platform == "gpu":
        return "gpu", count
  cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
  return "cpu", len(cores)


def _xla_flags(k: int) -> str:
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith("--xla_force_host_platform_device_count")]
  return " ".join(kept + [f"--xla_force_host_platform_device_count={k}"])


def slots(platform: str, devices: int, parallel: int,
          per_run: int | None = None) -> list[tuple[dict, list[int] | None, str]]:
  """(environment additions, CPU cores or None, description) for each concurrent run.

  One run at a time keeps the environment as it is (every device). Otherwise each run gets
  `per_run` devices (default: an equal share): CPU cores, each one XLA host device, and the
  process pinned to them; GPUs by CUDA_VISIBLE_DEVICES; TPU chips by libtpu's topology
  variables (TPU_VISIBLE_CHIPS, TPU_PROCESS_BOUNDS, TPU_CHIPS_PER_PROCESS_BOUNDS, a port each).
  """
  if parallel < 1:
    raise ValueError("--parallel must be at least 1")
  if parallel == 1 and not per_run:
    return [({}, None, "all devices")]
  per = per_run or devices // parallel
  if per < 1 or per * parallel > devices:
    raise ValueError(f"--parallel {parallel} x {per} device(s) each needs {parallel * max(per, 1)}"
                     f" {platform} devices; this host has {devices}. Lower --parallel or "
                     "--devices-per-run")
  out = []
  for i in range(parallel):
    ids = list(range(i * per, (i + 1) * per))
    if platform == "cpu":
      cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
      mine = [cores[j] for j in ids] if cores else None
      out.append(({"XLA_FLAGS": _xla_flags(per), "JAX_PLATFORMS": "cpu"}, mine,
                  f"cpu cores {','.join(map(str, mine or ids))}"))
    elif platform == "gpu":
      visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
      names = visible.split(",") if visible else [str(j) for j in range(devices)]
      chosen = ",".join(names[j] for j in ids)
      out.append(({"CUDA_VISIBLE_DEVICES": chosen}, None, f"GPUs {chosen}"))
    elif platform == "tpu":
      if per not in TPU_BOUNDS:
        raise ValueError(f"{per} TPU chips per run: use --devices-per-run "
                         f"{', '.join(map(str, TPU_BOUNDS))}")
      chips, port = ",".join(map(str, ids)), TPU_BASE_PORT + i
      out.append(({"TPU_VISIBLE_CHIPS": chips, "TPU_VISIBLE_DEVICES": chips,  # older libtpu
                   "TPU_CHIPS_PER_PROCESS_BOUNDS": TPU_BOUNDS[per], "TPU_PROCESS_BOUNDS": "1,1,1",
                   "TPU_PROCESS_PORT": str(port), "TPU_PROCESS_ADDRESSES": f"localhost:{port}",
                   "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
                   "TPU_MESH_CONTROLLER_PORT": str(port), "CLOUD_TPU_TASK_ID": "0",
                   "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}, None, f"TPU chips {chips}"))
    else:
      raise ValueError(f"unknown platform {platform!r}; use cpu, gpu or tpu")
  return out


# ---------------------------------------------------------------- running


class Runner:
  """Runs train commands on free device slots; SIGTERM is passed on to the runs (they save a
  checkpoint and exit) and stops new launches, so a preempted sweep resumes cleanly."""

  def __init__(self, slot_list):
    self.free = queue.Queue()
    for slot in slot_list:
      self.free.put(slot)
    self.procs, self.stopping = set(), False
    self.lock = threading.Lock()

  def terminate(self, signum=None, frame=None):
    del signum, frame
    self.stopping = True
    with self.lock:
      for proc in self.procs:
        proc.terminate()

  def say(self, text: str, err: bool = False):
    with self.lock:
      print(text, file=sys.stderr if err else sys.stdout, flush=True)

  def run(self, name: str, cmd: list[str], run_dir: epath.Path, steps: int) -> bool:
    env_add, cores, where = self.free.get()
    try:
      if self.stopping:
        return False
      return self._run(name, cmd, run_dir, steps, env_add, cores, where)
    finally:
      self.free.put((env_add, cores, where))

  def _run(self, name, cmd, run_dir, steps, env_add, cores, where) -> bool:
    run_dir.mkdir(parents=True, exist_ok=True)
    # Subprocess output needs a local file; a cloud run folder gets a copy when the run ends.
    local = not fs.is_remote(run_dir)
    log_file = str(run_dir / "sweep.log") if local else tempfile.mkstemp(suffix=".log")[1]
    start = time.perf_counter()
    self.say(f"start {name} on {where}")
    with open(log_file, "ab") as log:
      env_text = " ".join(f"{k}={v}" for k, v in env_add.items())
      log.write(f"\n$ {env_text + ' ' if env_text else ''}{shlex.join(cmd)}\n".encode())
      log.flush()
      proc = subprocess.Popen(cmd, env={**os.environ, **env_add}, stdout=log,
                              stderr=subprocess.STDOUT)
      if cores:
        # Pinned right after launch, while the child is still single-threaded (XLA sizes its
        # thread pool from the affinity when JAX starts); preexec_fn is unsafe in threads.
        try:
          os.sched_setaffinity(proc.pid, cores)
        except OSError:
          pass  # the child already exited; its exit code tells
      with self.lock:
        self.procs.add(proc)
      rc = proc.wait()
      with self.lock:
        self.procs.discard(proc)
    if not local:
      (run_dir / "sweep.log").write_bytes(epath.Path(log_file).read_bytes())
      epath.Path(log_file).unlink()
    secs = time.perf_counter() - start
    final = (run_dir / "checkpoints" / str(steps)).exists()
    if rc == 0 and final:
      (run_dir / "DONE").write_text(shlex.join(cmd) + "\n")
      s = metrics.summary(metrics.read_log(run_dir))
      loss = f", final loss {s['final_loss']:.4f}" if "final_loss" in s else ""
      self.say(f"done  {name} in {secs:.0f}s{loss}")
      return True
    if rc == 0:  # a preempted run exits 0 after saving; it is not finished
      self.say(f"stopped {name} before step {steps} (exit 0, preempted?); rerun the sweep to "
               "resume it", err=True)
      return False
    tail = (run_dir / "sweep.log").read_text().splitlines()[-8:]
    self.say(f"FAILED {name}: exit {rc} after {secs:.0f}s; last lines of {run_dir}/sweep.log:\n  "
             + "\n  ".join(tail), err=True)
    return False


def run_all(todo: list[tuple], slot_list) -> bool:
  """Trains every (name, cmd, run_dir, steps) of `todo` on the device slots, as many at once as
  there are slots; True when all finished. SIGTERM stops new launches and passes on to the runs
  (each saves and exits), so rerunning the same plan resumes it (sweep and ladder)."""
  runner = Runner(slot_list)
  previous = signal.signal(signal.SIGTERM, runner.terminate)
  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(slot_list)) as pool:
      return all(list(pool.map(lambda t: runner.run(*t), todo)))
  finally:
    signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------- comparison


def summarize(workdir, overrides: dict[str, str] | None = None) -> dict:
  """One row of the comparison: the run's name, swept values and headline figures."""
  return {"run": epath.Path(workdir).name, **(overrides or {}),
          **metrics.summary(metrics.read_log(workdir))}


def _rank(row):
  value = row.get("eval_loss", row.get("final_loss"))
  return (not metrics.finite(value), value if metrics.finite(value) else 0.0)


def table(rows: list[dict], keys: list[str] = ()) -> str:
  """Markdown table, best eval loss (else final loss) first."""
  cols = ["run", *keys, *COLUMNS[1:]]

  def fmt(col, v):
    if col == "tokens_per_s" and metrics.finite(v):
      return f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
      return f"{v:,}"
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(c, r.get(c)) for c in cols) + " |"
            for r in sorted(rows, key=_rank)]
  return "\n".join(lines)


def write_comparison(workdir, rows: list[dict], keys: list[str]) -> list[epath.Path]:
  """sweep.md, sweep.csv and plots/*.png in `workdir`; returns the plot paths."""
  out = epath.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  ranked = sorted(rows, key=_rank)
  (out / "sweep.md").write_text(table(rows, keys) + "\n")
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=["run", *keys, *COLUMNS[1:]], extrasaction="ignore")
  w.writeheader()
  w.writerows(ranked)
  (out / "sweep.csv").write_text(buf.getvalue())
  try:
    import matplotlib  # noqa: F401
  except ImportError:  # a training-only install (TPU worker): the tables still stand
    print("sweep: plots skipped: matplotlib is not installed (pip install matplotlib==3.11.2)",
          file=sys.stderr)
    return []
  logs = {r["run"]: metrics.read_log(out / r["run"]) for r in rows}
  plots = [out / "plots" / "curves.png"]
  report.save_png(report.plot_curves(logs), plots[0])
  for key in keys:
    plots.append(out / "plots" / f"{key}.png")
    report.save_png(report.plot_sweep(rows, key, keys), plots[-1])
  return plots


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  extra = []
  if "--" in argv:
    argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  p = argparse.ArgumentParser(prog="swahili100 sweep", description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="base config file, e.g. configs/debug.py")
  p.add_argument("--workdir", required=True, help="folder holding one run folder per combination")
  p.add_argument("--grid", action="append", default=[], help="section.key=v1,v2 (repeatable)")
  p.add_argument("--parallel", type=int, default=1, help="runs at once on this host (default 1)")
  p.add_argument("--devices-per-run", type=int, default=None,
                 help="devices each concurrent run gets (default: an equal share)")
  p.add_argument("--platform", default="auto", choices=["auto", "cpu", "gpu", "tpu"],
                 help="device kind to split between runs (default: detected)")
  p.add_argument("--tokens", type=float, default=None,
                 help="train every run on this many tokens (sets train.num_steps from its batch "
                 "and sequence length, and warmup_steps as --warmup-fraction of them)")
  p.add_argument("--warmup-fraction", type=float, default=0.1)
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  args = p.parse_args(argv)

  grid = parse_grid(args.grid)
  keys = [k for k, _ in grid]
  plan = []
  try:
    for overrides in combinations(grid):
      run_dir = epath.Path(args.workdir) / run_name(overrides)
      run_extra = extra
      if args.tokens:
        run_extra = [*extra, *budget_flags(resolve(args.config, overrides, extra), args.tokens,
                                           args.warmup_fraction)]
      cmd = [sys.executable, "-m", "swahili100.cli", "train", "--config", args.config,
             "--workdir", str(run_dir), *(f"--config.{k}={v}" for k, v in overrides.items()),
             *run_extra]
      steps = resolve(args.config, overrides, run_extra).train.num_steps
      plan.append((overrides, run_dir, cmd, steps))
    platform, devices = detect(args.platform)
    slot_list = slots(platform, devices, args.parallel, args.devices_per_run)
  except (config_lib.ConfigError, ValueError) as e:
    print(f"swahili100 sweep: error: {e}", file=sys.stderr)
    return 2

  todo = []
  for overrides, run_dir, cmd, steps in plan:
    done = finished(run_dir, steps)
    print(("skip (done): " if done else "") + shlex.join(cmd), flush=True)
    if not done:
      todo.append((run_name(overrides), cmd, run_dir, steps))
  if args.dry_run:
    return 0
  print(f"sweep: {len(todo)} of {len(plan)} runs to train, {len(slot_list)} at a time "
        f"({platform}: {'; '.join(s[2] for s in slot_list)})", file=sys.stderr, flush=True)

  ok = run_all(todo, slot_list)
  rows = [summarize(run_dir, overrides) for overrides, run_dir, _, _ in plan]
  plots = write_comparison(args.workdir, rows, keys)
  print(table(rows, keys))
  print(f"\n{args.workdir}/sweep.csv, sweep.md" + (
      f"; plots: {', '.join(str(p) for p in plots)}" if plots else ""))
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
