r"""Train Swahili-100 on a Cloud TPU VM slice (v4, v5e, v5p, v6e; one host or many).

    T="--name sw100 --zone us-central2-b --tpu-type v4-32"
    D="--workdir gs://B/runs/base --records gs://B/data/processed \
       --tokenizer gs://B/tokenizer/swahili_bpe.json"
    python launch/tpu_vm.py upload-data $D --local-records data/processed \
        --local-tokenizer tokenizer/swahili_bpe.json
    python launch/tpu_vm.py create $T [--spot | --queued [--spot]]
    python launch/tpu_vm.py setup $T          # uv, Python 3.11, this checkout, .[tpu]: every worker
    python launch/tpu_vm.py preflight $T $D   # same versions, devices and gs:// access everywhere
    python launch/tpu_vm.py run $T $D [-- --config.optim.lr=1e-3]  # preflight, train detached
    python launch/tpu_vm.py tail $T [--worker 0]
    python launch/tpu_vm.py delete $T [--queued]
    python launch/tpu_vm.py supervise $T $D --spot [--queued]  # create, setup, run; recreate on
                                                               # preemption until the run is done

Every command takes --dry-run: it prints every gcloud/ssh/git command it would run, one a line,
and runs nothing (worker 0's IP, which `describe` would return, is printed as WORKER0_IP).

The slice table (accelerator-type spelling, runtime version, hosts and chips per host) is
TPU_GENERATIONS below. Every worker gets its own `ssh --worker=i` and process id i; worker 0's
internal IP on --coordinator-port is the jax.distributed coordinator. Training runs detached
(setsid nohup) and logs to <remote-dir>/launcher-logs/train.log on each worker. Multi-host ssh
needs your key in an agent first: `ssh-add ~/.ssh/google_compute_engine`.
"""

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
try:   # optional: the launcher also runs where the package's dependencies are not installed
  from swahili100 import config_lib
  CONFIG_LIB_ERROR = ""
except ImportError as e:
  config_lib, CONFIG_LIB_ERROR = None, str(e)
DRY_RUN_IP = "WORKER0_IP"  # stands in for worker 0's internal IP when nothing is looked up
LOG_DIR = "launcher-logs"  # under --remote-dir on every worker; setup keeps it and .venv


# --- Slices ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Generation:
  name: str              # what users call it: --tpu-type v5e-8
  prefix: str            # the accelerator-type spelling: v5litepod-8
  runtime_version: str
  per_core: bool         # the suffix counts TensorCores (2 per chip, one JAX device per chip)
  single_vm_chips: int   # slices up to this many chips are one VM; larger ones use 4-chip VMs
  sizes: tuple           # suffixes Google documents for training slices


# Runtime versions: "TPU software versions", PyTorch and JAX table,
#   https://cloud.google.com/tpu/docs/runtimes (read 2026-12-01).
# Accelerator types, hosts and VMs per slice: https://cloud.google.com/tpu/docs/v4, .../v5e,
#   .../v5p, .../v6e (read 2026-12-01); v4/v5p suffixes count cores, v5e/v6e count chips; v5e
#   and v6e slices above 8 chips are 4-chip VMs (v6e table: 4x4 = 16 chips on 4 VMs).
TPU_GENERATIONS = {
    "v4": Generation("v4", "v4", "tpu-ubuntu2204-base", True, 4,
                     (8, 16, 32, 64, 128, 256, 384, 512, 1024, 1536, 2048, 4096)),
    "v5e": Generation("v5e", "v5litepod", "v2-alpha-tpuv5-lite", False, 8,
                      (1, 4, 8, 16, 32, 64, 128, 256)),
    "v5p": Generation("v5p", "v5p", "v2-alpha-tpuv5", True, 4,
                      (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288)),
    "v6e": Generation("v6e", "v6e", "v2-alpha-tpuv6e", False, 8,
                      (1, 4, 8, 16, 32, 64, 128, 256)),
}
_ALIASES = {"v4": "v4", "v5e": "v5e", "v5litepod": "v5e", "v5p": "v5p", "v6e": "v6e"}
MULTI_HOST_CHIPS_PER_VM = 4


@dataclasses.dataclass(frozen=True)
class Slice:
  accelerator_type: str  # what gcloud takes: v5litepod-32
  generation: str
  runtime_version: str
  chips: int             # = jax.device_count()
  hosts: int             # workers, = jax.process_count()
  chips_per_host: int    # = jax.local_device_count()


def parse_tpu_type(text: str) -> Slice:
  """'v5e-8' or 'v5litepod-8' (or v4-32, v5p-8, v6e-16) -> the slice it names."""
  m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", text.strip().lower())
  known = ", ".join(f"{g.name}-N" for g in TPU_GENERATIONS.values())
  if not m or m.group(1) not in _ALIASES:
    raise SystemExit(f"--tpu-type {text!r}: expected one of {known} (or the accelerator type, "
                     f"e.g. v5litepod-8)")
  gen = TPU_GENERATIONS[_ALIASES[m.group(1)]]
  size = int(m.group(2))
  if size not in gen.sizes:
    raise SystemExit(f"--tpu-type {text!r}: {gen.name} slices are {gen.name}-N with N in "
                     f"{list(gen.sizes)}")
  chips = size // 2 if gen.per_core else size
  if chips <= gen.single_vm_chips:
    hosts, per_host = 1, chips
  else:
    hosts, per_host = chips // MULTI_HOST_CHIPS_PER_VM, MULTI_HOST_CHIPS_PER_VM
  return Slice(f"{gen.prefix}-{size}", gen.name, gen.runtime_version, chips, hosts, per_host)


# --- The per-worker training command -----------------------------------------------------------

def train_argv(config: str, workdir: str, overrides: list[str], *, coordinator_address: str,
               num_processes: int, process_id: int | str, python: str = "swahili100") -> list[str]:
  """The `swahili100 train` argv of one process; the distributed values come last."""
  return [python, "train", "--config", config, "--workdir", workdir, *overrides,
          f"--config.mesh.coordinator_address={coordinator_address}",
          f"--config.mesh.num_processes={num_processes}",
          f"--config.mesh.process_id={process_id}"]


# --- Running commands ----------------------------------------------------------------------------

class CommandFailed(Exception):
  """A step that failed; the message names the command. main() prints it and exits 1."""


class Shell:
  """Runs commands, or with dry_run prints each (shlex-quoted, one a line) and runs nothing."""

  def __init__(self, dry_run: bool):
    self.dry_run = dry_run

  def show(self, cmd: list[str]) -> None:
    if self.dry_run:
      print(shlex.join(cmd), flush=True)
    else:
      print(f"+ {shlex.join(cmd)}", file=sys.stderr, flush=True)

  def call(self, cmd: list[str], *, capture: bool = False, check: bool = True,
           timeout: float | None = None) -> subprocess.CompletedProcess:
    self.show(cmd)
    if self.dry_run:
      return subprocess.CompletedProcess(cmd, 0, "", "")
    try:
      res = subprocess.run(cmd, text=True, capture_output=capture, timeout=timeout)
    except subprocess.TimeoutExpired:
      raise CommandFailed(f"{shlex.join(cmd)[:300]} did not finish in {timeout:.0f} s") from None
    if check and res.returncode:
      raise CommandFailed(f"{shlex.join(cmd)[:300]} exited {res.returncode}"
                          f"{': ' + res.stderr.strip()[-600:] if capture else ''}")
    return res

  def parallel(self, cmds: list[list[str]], timeout: float) -> list[subprocess.CompletedProcess]:
    """Starts every command at once (workers must rendezvous), waits for all, bounded."""
    for cmd in cmds:
      self.show(cmd)
    if self.dry_run:
      return [subprocess.CompletedProcess(c, 0, "", "") for c in cmds]
    procs = [subprocess.Popen(c, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for c in cmds]
    deadline = time.monotonic() + timeout
    results = []
    try:
      for cmd, p in zip(cmds, procs):
        try:
          out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
          results.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
        except subprocess.TimeoutExpired:
          p.kill()
          out, err = p.communicate()
          results.append(subprocess.CompletedProcess(cmd, 124, out, err + "\n(timed out)"))
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
    return results


# --- gcloud command builders -------------------------------------------------------------------

def _gcloud(args, *words) -> list[str]:
  cmd = [args.gcloud, *words]
  if args.project:
    cmd.append(f"--project={args.project}")
  return cmd


def _qr_id(args) -> str:
  return args.queued_resource_id or f"{args.name}-qr"


def create_cmd(args, slc: Slice) -> list[str]:
  version = args.runtime_version or slc.runtime_version
  spot = ["--spot"] if args.spot else []
  if args.queued:
    return _gcloud(args, "compute", "tpus", "queued-resources", "create", _qr_id(args),
                   f"--node-id={args.name}", f"--zone={args.zone}",
                   f"--accelerator-type={slc.accelerator_type}",
                   f"--runtime-version={version}", *spot, *args.create_flag)
  return _gcloud(args, "compute", "tpus", "tpu-vm", "create", args.name, f"--zone={args.zone}",
                 f"--accelerator-type={slc.accelerator_type}", f"--version={version}", *spot,
                 *args.create_flag)


def delete_cmd(args) -> list[str]:
  if args.queued:  # --force also deletes the node the queued resource holds
    return _gcloud(args, "compute", "tpus", "queued-resources", "delete", _qr_id(args),
                   f"--zone={args.zone}", "--force", "--quiet")
  return _gcloud(args, "compute", "tpus", "tpu-vm", "delete", args.name, f"--zone={args.zone}",
                 "--quiet")


def state_cmd(args) -> list[str]:
  if args.queued:
    return _gcloud(args, "compute", "tpus", "queued-resources", "describe", _qr_id(args),
                   f"--zone={args.zone}", "--format=value(state.state)")
  return _gcloud(args, "compute", "tpus", "tpu-vm", "describe", args.name, f"--zone={args.zone}",
                 "--format=value(state)")


def endpoints_cmd(args) -> list[str]:
  return _gcloud(args, "compute", "tpus", "tpu-vm", "describe", args.name, f"--zone={args.zone}",
                 "--format=json(networkEndpoints)")


def ssh_cmd(args, worker: int | str, command: str) -> list[str]:
  extra = ["--internal-ip"] if args.internal_ip else []
  return _gcloud(args, "compute", "tpus", "tpu-vm", "ssh", args.name, f"--zone={args.zone}",
                 f"--worker={worker}", *extra, f"--command={command}")


def scp_cmd(args, local: str, remote: str) -> list[str]:
  extra = ["--internal-ip"] if args.internal_ip else []
  return _gcloud(args, "compute", "tpus", "tpu-vm", "scp", local, f"{args.name}:{remote}",
                 f"--zone={args.zone}", "--worker=all", *extra)


# --- Worker scripts (one shell line each, so --dry-run prints one command a line) ----------------

def setup_script(args) -> str:
  """uv, its Python, the code and `.[tpu]` into <remote-dir>/.venv, idempotent."""
  d, py = shlex.quote(args.remote_dir), args.python_version
  uv = '"$HOME/.local/bin/uv"'
  installer = ("https://astral.sh/uv/install.sh" if args.uv_version == "latest"
               else f"https://astral.sh/uv/{args.uv_version}/install.sh")
  want = "(" + ", ".join(py.split(".")[:2]) + ")"
  steps = [
      "set -e", 'cd "$HOME"',
      f"(test -x {uv} || (curl -LsSf {installer} | "
      f'env UV_UNMANAGED_INSTALL="$HOME/.local/bin" sh))',
      f"mkdir -p {d}",
  ]
  if args.repo:
    ref = shlex.quote(args.ref)
    steps += [f"(test -d {d}/.git || git clone {shlex.quote(args.repo)} {d})",
              f"git -C {d} fetch --tags origin {ref}",
              f"git -C {d} checkout --force FETCH_HEAD"]
  else:  # the tarball `scp` put in $HOME; .venv and the logs survive a code refresh
    steps += [f"find {d} -mindepth 1 -maxdepth 1 ! -name .venv ! -name {LOG_DIR} "
              f"-exec rm -rf {{}} +",
              f"tar -xzf {shlex.quote(_remote_tarball(args))} -C {d}"]
  steps += [
      f"cd {d}",
      f"{uv} python install {py}",
      f"(.venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != {want})' "
      f"2>/dev/null || (rm -rf .venv && {uv} venv --python {py} .venv))",
      " ".join([f"{uv} pip install --python .venv/bin/python -e '.[tpu]'",
                *(shlex.quote(p) for p in args.extra_packages.split())]),
      ".venv/bin/python -c 'import sys, jax; print(sys.version.split()[0], jax.__version__)'",
  ]
  return "; ".join(steps[:2]) + "; " + " && ".join(steps[2:])


def _remote_tarball(args) -> str:
  return f"{args.remote_dir}-src.tar.gz"


def _local_tarball(args) -> str:
  return os.path.join(tempfile.gettempdir(), f"{args.name}-src.tar.gz")


def run_script(args, argv: list[str], worker: int) -> str:
  """Starts `argv` detached on a worker unless its last run is still alive (pid file)."""
  d, log, pid = shlex.quote(args.remote_dir), f"{LOG_DIR}/train.log", f"{LOG_DIR}/train.pid"
  env = " ".join(shlex.quote(e) for e in ["PYTHONUNBUFFERED=1", *args.env])
  return (f"cd {d} && mkdir -p {LOG_DIR} && "
          f'if test -f {pid} && kill -0 "$(cat {pid})" 2>/dev/null; then '
          f'echo "worker {worker}: training already running, pid $(cat {pid})"; else '
          f"env {env} setsid nohup {shlex.join(argv)} >> {log} 2>&1 < /dev/null & "
          f'echo $! > {pid}; echo "worker {worker}: started pid $!, log {args.remote_dir}/{log}"; '
          f"fi")


def preflight_script(args, slc: Slice, coordinator: str, worker: int) -> str:
  argv = [".venv/bin/python", "-m", "swahili100.preflight", "--workdir", args.workdir,
          "--coordinator-address", coordinator, "--num-processes", str(slc.hosts),
          "--process-id", str(worker), "--expect-devices", str(slc.chips),
          "--expect-local-devices", str(slc.chips_per_host), "--timeout",
          str(args.preflight_timeout)]
  if args.records:
    argv += ["--records", args.records]
  if args.tokenizer:
    argv += ["--tokenizer", args.tokenizer]
  return f"cd {shlex.quote(args.remote_dir)} && {shlex.join(argv)}"


# --- Steps ---------------------------------------------------------------------------------------

def _slice(args) -> Slice:
  if not args.tpu_type:
    raise SystemExit(f"{args.command}: pass --tpu-type (e.g. v5e-8, v4-32, v5p-8, v6e-8)")
  return parse_tpu_type(args.tpu_type)


def _need_workdir(args) -> None:
  if not (args.workdir or "").startswith("gs://"):
    raise SystemExit(f"{args.command}: --workdir must be gs://BUCKET/... so every worker (and "
                     f"the supervisor) reads and writes the same checkpoints; got "
                     f"{args.workdir!r}")
  for flag in ("records", "tokenizer"):
    value = getattr(args, flag)
    if value and not value.startswith("gs://"):
      print(f"warning: --{flag} {value} is not gs://; every worker must be able to read it",
            file=sys.stderr)
  if not args.records or not args.tokenizer:
    print("warning: without --records and --tokenizer the config's data paths are used on "
          "every worker", file=sys.stderr)


def coordinator_ip(run: Shell, args) -> str:
  res = run.call(endpoints_cmd(args), capture=True)
  if run.dry_run:
    return DRY_RUN_IP
  try:
    return json.loads(res.stdout)["networkEndpoints"][0]["ipAddress"]
  except (ValueError, KeyError, IndexError, TypeError):
    raise CommandFailed(f"no networkEndpoints[0].ipAddress in the describe output of "
                        f"{args.name}: {res.stdout[:300]!r}") from None


def do_create(run: Shell, args, slc: Slice) -> None:
  run.call(create_cmd(args, slc))
  if args.queued and not args.no_wait:
    wait_active(run, args)


def wait_active(run: Shell, args) -> None:
  """Polls a queued resource until ACTIVE; fails on FAILED/SUSPENDED."""
  while True:
    state = get_state(run, args)
    if run.dry_run or state in HEALTHY:
      return
    if state in DEAD or state == NOT_FOUND:
      raise CommandFailed(f"queued resource {_qr_id(args)} is {state}; delete it and create "
                          f"again (or use supervise, which does)")
    print(f"queued resource {_qr_id(args)} is {state or 'unknown'}; waiting", file=sys.stderr)
    time.sleep(args.poll_interval)


def do_setup(run: Shell, args) -> None:
  if not args.repo:
    tarball = _local_tarball(args)
    if not run.dry_run:
      dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                             text=True, capture_output=True).stdout.strip()
      if dirty:
        print(f"warning: uncommitted changes are not shipped (git archive {args.ref}):\n{dirty}",
              file=sys.stderr)
    run.call(["git", "-C", REPO, "archive", "--format=tar.gz", f"--output={tarball}", args.ref])
    run.call(scp_cmd(args, tarball, _remote_tarball(args)), timeout=args.ssh_timeout)
  run.call(ssh_cmd(args, "all", setup_script(args)), timeout=args.ssh_timeout)


def worker_argvs(args, slc: Slice, coordinator: str) -> list[list[str]]:
  data = []
  if args.records:
    data.append(f"--config.data.records_dir={args.records}")
  if args.tokenizer:
    data.append(f"--config.data.tokenizer={args.tokenizer}")
  return [train_argv(args.config, args.workdir, data + args.overrides,
                     coordinator_address=coordinator, num_processes=slc.hosts, process_id=i,
                     python=".venv/bin/swahili100") for i in range(slc.hosts)]


def do_preflight(run: Shell, args, slc: Slice, ip: str = "") -> None:
  """Runs swahili100.preflight on every worker at once; raises with every problem found."""
  ip = ip or (coordinator_ip(run, args) if slc.hosts > 1 else "127.0.0.1")
  cmds = [ssh_cmd(args, i, preflight_script(args, slc, f"{ip}:{args.preflight_port}", i))
          for i in range(slc.hosts)]
  results = run.parallel(cmds, timeout=args.preflight_timeout + 120)
  if run.dry_run:
    return
  failed = []  # the verdict's problems already name workers; a worker without one is named here
  for i, res in enumerate(results):
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    verdict = json.loads(lines[-1]) if lines else {}
    if res.returncode or verdict.get("preflight") != "ok":
      failed += verdict.get("problems") or [
          f"worker {i}: exit {res.returncode}: {res.stderr.strip()[-600:]}"]
  if failed:
    raise CommandFailed("preflight failed:\n  " + "\n  ".join(dict.fromkeys(failed)))
  v = json.loads([ln for ln in results[0].stdout.splitlines() if ln.startswith("{")][-1])
  print(f"preflight ok: {v['num_processes']} worker(s), {v['device_count']} devices, "
        f"{json.dumps(v['versions'])}", file=sys.stderr)


def do_run(run: Shell, args, slc: Slice) -> None:
  """Preflight (unless --skip-preflight), then training started detached on every worker."""
  ip = coordinator_ip(run, args) if slc.hosts > 1 else ""
  if not args.skip_preflight:
    do_preflight(run, args, slc, ip)
  coordinator = f"{ip}:{args.coordinator_port}" if ip else ""
  cmds = [ssh_cmd(args, i, run_script(args, argv, i))
          for i, argv in enumerate(worker_argvs(args, slc, coordinator))]
  for res in run.parallel(cmds, timeout=args.ssh_timeout):
    if res.returncode:
      raise CommandFailed(f"starting training failed: {shlex.join(res.args)[:300]} exited "
                          f"{res.returncode}: {res.stderr.strip()[-600:]}")
    if res.stdout.strip():
      print(res.stdout.strip(), file=sys.stderr)


def do_upload(run: Shell, args) -> None:
  if not (args.local_records or args.local_tokenizer):
    raise SystemExit("upload-data: pass --local-records DIR and/or --local-tokenizer FILE")
  if args.local_records:
    if not args.records.startswith("gs://"):
      raise SystemExit("upload-data: --records must be the gs:// folder to copy into")
    run.call(_gcloud(args, "storage", "rsync", "--recursive", args.local_records, args.records))
  if args.local_tokenizer:
    if not args.tokenizer.startswith("gs://"):
      raise SystemExit("upload-data: --tokenizer must be the gs:// object to copy to")
    run.call(_gcloud(args, "storage", "cp", args.local_tokenizer, args.tokenizer))


# --- Supervision ---------------------------------------------------------------------------------

# Node states: google.cloud.tpu.v2 Node.State; queued resources: QueuedResourceState.State and
# https://cloud.google.com/tpu/docs/queued-resources (read 2026-12-01).
HEALTHY = {"READY", "ACTIVE"}
DEAD = {"PREEMPTED", "TERMINATED", "UNKNOWN", "FAILED", "SUSPENDED"}
NOT_FOUND = "NOT_FOUND"


def get_state(run: Shell, args) -> str:
  res = run.call(state_cmd(args), capture=True, check=False)
  if res.returncode:
    text = res.stderr.lower()
    return NOT_FOUND if "not_found" in text or "not found" in text else ""
  return res.stdout.strip().upper()


def num_steps(args) -> int:
  """--num-steps, else the last --config.train.num_steps override, else the config's value."""
  if args.num_steps:
    return args.num_steps
  for i in range(len(args.overrides) - 1, -1, -1):
    key, eq, value = args.overrides[i].partition("=")
    if key == "--config.train.num_steps":
      return int(value if eq else args.overrides[i + 1])
  if config_lib is None:
    raise SystemExit(f"supervise: cannot read {args.config} here ({CONFIG_LIB_ERROR}); pass "
                     "--num-steps N")
  spec = args.config if os.path.isabs(args.config) else os.path.join(REPO, args.config)
  return int(config_lib.load(spec).train.num_steps)


def done_marker(args) -> str:
  return f"{args.workdir.rstrip('/')}/" + args.done_marker.format(num_steps=num_steps(args))


def is_done(run: Shell, args, marker: str) -> bool:
  return run.call(_gcloud(args, "storage", "ls", marker), capture=True,
                  check=False).returncode == 0 and not run.dry_run


def training_alive(run: Shell, args) -> bool:
  """Whether worker 0 runs the trainer this launcher started (its pid file names a live pid)."""
  pid = f"{shlex.quote(args.remote_dir)}/{LOG_DIR}/train.pid"
  probe = f'kill -0 "$(cat {pid} 2>/dev/null)" 2>/dev/null'
  return run.call(ssh_cmd(args, 0, probe), capture=True, check=False,
                  timeout=args.ssh_timeout).returncode == 0


def _launch(run: Shell, args, slc: Slice) -> bool:
  """setup + preflight + run; False when the slice died under it (then the loop recreates)."""
  try:
    do_setup(run, args)
    do_run(run, args, slc)
    return True
  except CommandFailed:
    if get_state(run, args) in DEAD | {NOT_FOUND}:
      print("supervise: the slice went away during setup/run; recreating", file=sys.stderr)
      return False
    raise


def do_supervise(run: Shell, args, slc: Slice) -> None:
  marker = done_marker(args)
  if run.dry_run:  # one pass of the loop: first start, one poll, the end
    is_done(run, args, marker)
    get_state(run, args)
    do_create(run, args, slc)
    do_setup(run, args)
    do_run(run, args, slc)
    is_done(run, args, marker)
    get_state(run, args)
    if not args.keep:
      run.call(delete_cmd(args))
    print(f"(supervise repeats `gcloud storage ls {marker}` and the describe every "
          f"{args.poll_interval:g} s)", file=sys.stderr)
    return
  restarts, launched, create_failures = 0, False, 0
  first_look = True  # a slice already READY when supervise starts may be training already
  while not is_done(run, args, marker):
    state = get_state(run, args)
    print(f"supervise: {'queued resource ' + _qr_id(args) if args.queued else args.name} is "
          f"{state or 'unknown'}", file=sys.stderr)
    if state == NOT_FOUND or state in DEAD:
      if launched or state in DEAD:
        restarts += 1
        if restarts > args.max_restarts:
          raise CommandFailed(f"supervise: {restarts - 1} restarts used (--max-restarts); "
                              f"{args.name} is {state}, giving up")
        print(f"supervise: restart {restarts}/{args.max_restarts}", file=sys.stderr)
      if state != NOT_FOUND:  # a failed delete shows up as a failed create, retried below
        run.call(delete_cmd(args), check=False)
      res = run.call(create_cmd(args, slc), capture=True, check=False)
      if res.returncode:  # e.g. no Spot capacity right now: try again next poll
        create_failures += 1
        print(f"supervise: create failed ({create_failures}/{args.max_create_failures}): "
              f"{res.stderr.strip()[-400:]}", file=sys.stderr)
        if create_failures >= args.max_create_failures:
          raise CommandFailed(f"supervise: create failed {create_failures} times in a row "
                              f"(--max-create-failures); --queued waits for capacity instead")
      else:
        create_failures = 0
      launched = False
    elif state in HEALTHY and not launched:
      if first_look and training_alive(run, args):  # started by `run` earlier: watch it only
        print("supervise: training is already running on worker 0; watching it", file=sys.stderr)
        launched = True
      else:
        launched = _launch(run, args, slc)
    first_look = False
    time.sleep(args.poll_interval)
  print(f"supervise: {marker} exists; the run is complete", file=sys.stderr)
  if not args.keep:
    run.call(delete_cmd(args))


# --- Command line --------------------------------------------------------------------------------

COMMANDS = ("create", "setup", "run", "preflight", "supervise", "tail", "delete", "upload-data")


def parse_args(argv: list[str]) -> argparse.Namespace:
  argv, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
      else (argv, [])
  common = argparse.ArgumentParser(add_help=False)
  g = common.add_argument_group("slice")
  g.add_argument("--name", default="swahili100", help="TPU (node) name")
  g.add_argument("--zone", default="", help="e.g. us-central2-b (v4), us-west4-a (v5e)")
  g.add_argument("--project", default="", help="GCP project (default: gcloud's)")
  g.add_argument("--tpu-type", default="", help="v4-8, v4-32, v5e-8 (= v5litepod-8), v5p-8, v6e-8")
  g.add_argument("--runtime-version", default="", help="override the table's runtime version")
  g.add_argument("--spot", action="store_true", help="Spot VMs (preemptible, cheaper)")
  g.add_argument("--queued", action="store_true", help="request through a queued resource")
  g.add_argument("--queued-resource-id", default="", help="default: <name>-qr")
  g.add_argument("--create-flag", action="append", default=[],
                 help="extra flag for the create command, repeatable (e.g. --network=N)")
  g.add_argument("--no-wait", action="store_true", help="create: do not wait for ACTIVE")
  g.add_argument("--internal-ip", action="store_true", help="ssh/scp over internal IPs")
  g.add_argument("--gcloud", default="gcloud", help="the gcloud executable")
  g.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
  w = common.add_argument_group("workers")
  w.add_argument("--remote-dir", default="swahili100", help="code folder on every worker ($HOME)")
  w.add_argument("--repo", default="", help="clone this URL on the workers instead of shipping "
                 "`git archive` of the local checkout")
  w.add_argument("--ref", default="HEAD", help="commit/branch/tag to ship or check out")
  w.add_argument("--python-version", default="3.11", help="Python uv installs on the workers")
  w.add_argument("--uv-version", default="0.13.8", help="uv installer version ('latest' ok)")
  w.add_argument("--extra-packages", default="",
                 help="more pip requirements installed beside .[tpu] (gcsfs, for gs://, is "
                 "already a core dependency)")
  w.add_argument("--ssh-timeout", type=float, default=3600, help="seconds per ssh/scp step")
  t = common.add_argument_group("training")
  t.add_argument("--config", default="configs/swahili_base.py", help="relative to the repo")
  t.add_argument("--workdir", default="", help="gs://BUCKET/runs/NAME")
  t.add_argument("--records", default="", help="gs:// records folder (config.data.records_dir)")
  t.add_argument("--tokenizer", default="", help="gs:// tokenizer file (config.data.tokenizer)")
  t.add_argument("--env", action="append", default=[], help="KEY=VALUE for training, repeatable")
  t.add_argument("--coordinator-port", type=int, default=8476)
  t.add_argument("--preflight-port", type=int, default=8477)
  t.add_argument("--preflight-timeout", type=int, default=300, help="seconds to rendezvous")
  t.add_argument("--skip-preflight", action="store_true", help="run: start training directly")
  s = common.add_argument_group("supervise")
  s.add_argument("--poll-interval", type=float, default=60, help="seconds between polls")
  s.add_argument("--max-restarts", type=int, default=20, help="recreations before giving up")
  s.add_argument("--max-create-failures", type=int, default=30,
                 help="failed creates in a row (no capacity) before giving up")
  s.add_argument("--num-steps", type=int, default=0, help="0: from the config and overrides")
  s.add_argument("--done-marker", default="checkpoints/{num_steps}/commit_success.txt",
                 help="object under --workdir whose existence means the run is complete "
                      "(Orbax writes commit_success.txt into a finished checkpoint)")
  s.add_argument("--keep", action="store_true", help="do not delete the slice when done")
  e = common.add_argument_group("tail and upload-data")
  e.add_argument("--worker", type=int, default=0, help="tail: which worker's log")
  e.add_argument("--lines", type=int, default=100, help="tail: lines of history")
  e.add_argument("--no-follow", action="store_true", help="tail: print and exit")
  e.add_argument("--local-records", default="", help="upload-data: local records folder")
  e.add_argument("--local-tokenizer", default="", help="upload-data: local tokenizer file")
  p = argparse.ArgumentParser(prog="launch/tpu_vm.py", description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n", 2)[2])
  sub = p.add_subparsers(dest="command", required=True)
  for name in COMMANDS:
    sub.add_parser(name, parents=[common])
  args = p.parse_args(argv)
  bad = [o for o in overrides if o.startswith("--") and not o.startswith("--config.")]
  if bad:
    raise SystemExit(f"after --, only --config.KEY=VALUE overrides go to the trainer; got {bad}")
  args.overrides = overrides
  for item in args.env:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item):
      raise SystemExit(f"--env {item!r}: expected KEY=VALUE")
  if os.path.isabs(args.config):
    rel = os.path.relpath(args.config, REPO)
    if rel.startswith(".."):
      raise SystemExit(f"--config {args.config}: must be inside the repo (the workers get the "
                       f"repo, not this path)")
    args.config = rel
  if args.command not in ("upload-data",) and not args.zone:
    raise SystemExit(f"{args.command}: pass --zone (e.g. us-central2-b)")
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  run = Shell(args.dry_run)
  cmd = args.command
  try:
    if cmd == "create":
      do_create(run, args, _slice(args))
    elif cmd == "setup":
      do_setup(run, args)
    elif cmd == "preflight":
      _need_workdir(args)
      do_preflight(run, args, _slice(args))
    elif cmd == "run":
      _need_workdir(args)
      do_run(run, args, _slice(args))
    elif cmd == "supervise":
      _need_workdir(args)
      do_supervise(run, args, _slice(args))
    elif cmd == "tail":
      log = f"{LOG_DIR}/train.log"
      follow = "" if args.no_follow else " -F"
      run.call(ssh_cmd(args, args.worker, f"tail -n {args.lines}{follow} "
                                          f"{shlex.quote(args.remote_dir)}/{log}"), check=False)
    elif cmd == "delete":
      run.call(delete_cmd(args))
    elif cmd == "upload-data":
      do_upload(run, args)
  except CommandFailed as e:
    print(f"tpu_vm {cmd}: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
