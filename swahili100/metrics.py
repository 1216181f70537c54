"""A run's metrics: `<workdir>/logs/training.jsonl`, TensorBoard event files, the progress line.

    rows = read_log("runs/debug")              # the one reader (sweep, report, demo, model card)
    with MetricsWriter(workdir, enabled=jax.process_index() == 0, resume_step=start) as log:
      log.write({"step": 10, "loss": 3.2, ...})
    progress = Progress(num_steps, start, enabled=is_main); progress.update(step, row)

Every path goes through `etils.epath`, so a workdir may be local or a `gs://` URL. A local log is
appended one line per row (`tail -f` works, a crash loses nothing written). Cloud objects cannot
be appended to, so on `gs://` the writer keeps every row and rewrites the object at most every
`flush_secs` and on `flush()`/`close()`; TensorBoard events go to a local temporary folder and are
copied up at the same moments (`tensorboard --logdir gs://.../runs` reads them).
"""

import json
import math
import shutil
import socket
import statistics
import sys
import tempfile
import time

from etils import epath
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter
from tqdm import tqdm

from swahili100 import fs

LOG_FILE = "training.jsonl"


def log_path(workdir) -> epath.Path:
  return epath.Path(workdir) / "logs" / LOG_FILE


def _parse(text: str, path) -> list[dict]:
  lines = text.splitlines()
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # torn by a crash mid-write, or read while being written
        break
      raise ValueError(f"{path} line {i + 1} is not JSON ({e}); delete or repair that line "
                       "(each line must be one JSON object)") from None
    if not isinstance(row, dict):
      raise ValueError(f"{path} line {i + 1} is {type(row).__name__}, not a JSON object; "
                       "delete that line")
    rows.append(row)
  return rows


def read_log(workdir) -> list[dict]:
  """The rows of `<workdir>/logs/training.jsonl`, oldest first; [] when the run has none yet.

  A torn last line (a crash mid-write, or a read racing the writer) is skipped; a bad line
  elsewhere raises ValueError naming the file and line."""
  path = log_path(workdir)
  if not path.exists():
    return []
  return _parse(path.read_text(), path)


def scalars(row: dict) -> dict[str, float]:
  """The row's numeric values except `step` (bools, strings, None and nested values skipped)."""
  return {k: float(v) for k, v in row.items()
          if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def finite(value) -> bool:
  """True for a real, finite number (not a bool)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def train_rows(rows: list[dict]) -> list[dict]:
  return [r for r in rows if finite(r.get("loss"))]


def eval_rows(rows: list[dict]) -> list[dict]:
  return [r for r in rows if finite(r.get("eval_loss"))]


def summary(rows: list[dict]) -> dict:
  """A run's headline figures, each as the log records it: last step, tokens seen and train
  loss; best eval loss and the bits-per-byte of that same row; median tokens/s of the logged
  steps (the median, because single steps are noisy)."""
  out = {}
  train, evals = train_rows(rows), eval_rows(rows)
  if train:
    last = train[-1]
    out.update(steps=last.get("step"), tokens_seen=last.get("tokens_seen"),
               final_loss=last["loss"])
    speeds = [r["tokens_per_s"] for r in train if finite(r.get("tokens_per_s"))]
    if speeds:
      out["tokens_per_s"] = statistics.median(speeds)
  if evals:
    best = min(evals, key=lambda r: r["eval_loss"])
    out.update(eval_loss=best["eval_loss"], eval_bpb=best.get("eval_bpb"))
  return out


class EventFile:
  """One TensorBoard event file: TFRecords of `Event` protos, written with tensorboard's own
  record writer on the caller's thread (a few hundred bytes per logged step: no queue, no
  thread, and a write error surfaces where it happens). Named by the nanosecond it was opened,
  so the attempts of a run sort in order (TensorBoard reads a folder's files by name)."""

  def __init__(self, folder: str):
    name = f"events.out.tfevents.{time.time_ns()}.{socket.gethostname()}"
    self.path = epath.Path(folder) / name
    self._records = RecordWriter(self.path.open("wb"))
    self.add(Event(wall_time=time.time(), file_version="brain.Event:2"))

  def add(self, event: Event) -> None:
    self._records.write(event.SerializeToString())

  def scalars(self, step: int | None, values: dict) -> None:
    self.add(Event(wall_time=time.time(), step=step or 0, summary=Summary(value=[
        Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()


class MetricsWriter:
  """Writes each row to training.jsonl and its numeric scalars to TensorBoard at the row's step.

  `enabled=False` (every process but the main one) writes nothing. `resume_step`: the step the
  run resumes from (0 on a fresh start); rows and TensorBoard points of an earlier attempt
  beyond it are dropped, so the log shows one trajectory. `flush_secs`: on cloud paths, the
  longest time between uploads (a crash loses at most that much of the log).
  """

  def __init__(self, workdir, *, enabled: bool, tensorboard: bool = True,
               resume_step: int | None = None, flush_secs: float = 30.0, tracker=None):
    self.enabled, self.flush_secs = enabled, flush_secs
    self._tracker = tracker   # tracking.WandbRun (or None): gets what TensorBoard gets
    self._tb = self._tmp = None
    self._closed = not enabled
    if not enabled:
      return
    self.path = log_path(workdir)
    self.logdir = self.path.parent
    self.remote = fs.is_remote(self.path)
    self.logdir.mkdir(parents=True, exist_ok=True)
    text = self.path.read_text() if self.path.exists() else ""
    rows = _parse(text, self.path)
    if resume_step is not None:
      rows = [r for r in rows if not isinstance(r.get("step"), int) or r["step"] <= resume_step]
    lines = [json.dumps(r) for r in rows]
    if text and (resume_step is not None or not text.endswith("\n")):
      self._rewrite(lines)  # drops the later attempt's rows and any torn last line
    self._lines = lines if self.remote else None  # cloud: every row, rewritten on each flush
    self._last_flush = time.monotonic()
    if tensorboard:
      # A fresh log starts a TensorBoard session at step 0; a resumed one at resume_step + 1.
      start = resume_step + 1 if resume_step is not None else (None if text else 0)
      self._tb = self._tensorboard(start)

  def _tensorboard(self, start: int | None) -> EventFile:
    # Event files are written to a local folder; on cloud paths that folder is a temporary one
    # copied up on flush, because event files are appended to as they grow.
    if self.remote:
      self._tmp = tempfile.mkdtemp(prefix="swahili100-tb-")
    tb = EventFile(self._tmp or str(self.logdir))
    if start is not None:
      # A SessionLog.START at step s after an earlier one makes TensorBoard drop the events at
      # steps >= s: what an interrupted attempt logged after its last checkpoint. (The Python
      # loader needs that marker and ignores a run's first; the Rust one drops by step alone.)
      tb.add(Event(step=start, wall_time=time.time(),
                   session_log=SessionLog(status=SessionLog.START)))
    return tb

  def _rewrite(self, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if self.remote:
      self.path.write_text(text)  # one object write, atomic on GCS
    else:  # write-then-rename, so a crash leaves the old log or the new one, never half
      tmp = self.path.with_name(self.path.name + ".tmp")
      tmp.write_text(text)
      tmp.replace(self.path)

  def write(self, row: dict) -> None:
    if not self.enabled:
      return
    if self._closed:
      raise RuntimeError(f"MetricsWriter for {self.path} is closed")
    line = json.dumps(row)
    if self.remote:
      self._lines.append(line)
    else:
      with self.path.open("a") as f:
        f.write(line + "\n")
    if self._tb is not None:
      self._tb.scalars(row.get("step"), scalars(row))
    if self._tracker is not None:
      self._tracker.log(row.get("step"), scalars(row))
    if self.remote and time.monotonic() - self._last_flush >= self.flush_secs:
      self._try_upload("retrying at the next flush", self.flush)

  def _try_upload(self, then: str, upload) -> None:
    try:
      upload()
    except Exception as e:  # noqa: BLE001 - a storage error must not stop training or its exit
      print(f"warning: could not upload {self.path} ({str(e)[:300]}); {then}", file=sys.stderr,
            flush=True)

  def flush(self) -> None:
    """Local: TensorBoard events to disk. Cloud: rewrites training.jsonl and the event files."""
    if not self.enabled or self._closed:
      return
    if self._tb is not None:
      self._tb.flush()
    self._upload()

  def _upload(self) -> None:
    if not self.remote:
      return
    self._rewrite(self._lines)
    if self._tmp:
      for event_file in epath.Path(self._tmp).iterdir():
        (self.logdir / event_file.name).write_bytes(event_file.read_bytes())
    self._last_flush = time.monotonic()

  def close(self) -> None:
    if self._closed:
      return
    if self._tb is not None:
      self._tb.close()
    if self._tracker is not None:
      self._tracker.finish()
    # (a bucket that fails now keeps only the rows of the last flush; a resume logs the steps
    # after its checkpoint again)
    self._try_upload("its last rows are not in the bucket", self._upload)
    self._closed = True
    if self._tmp:
      shutil.rmtree(self._tmp, ignore_errors=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class Progress:
  """One progress line per logged step: step, loss, tokens/s and ETA.

  On a terminal it is a tqdm bar updated in place; otherwise (a log file, `nohup`, a notebook
  subprocess) one plain line per call, so logs stay readable. The ETA uses the seconds per step
  measured since the first update, so the first step's compilation does not inflate it.
  """

  def __init__(self, total_steps: int, start_step: int, *, enabled: bool, stream=sys.stderr):
    self.total, self.start, self.enabled, self.stream = total_steps, start_step, enabled, stream
    self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
    self._bar = None
    self._first = None  # (time, step) of the first update

  def _message(self, row: dict) -> str:
    parts = []
    if isinstance(row.get("loss"), (int, float)):
      parts.append(f"loss {row['loss']:.4f}")
    if isinstance(row.get("tokens_per_s"), (int, float)):
      parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
    return "  ".join(parts)

  def eta(self, step: int, now: float | None = None) -> float | None:
    """Seconds left, from the pace since the first update; None before two updates."""
    now = time.monotonic() if now is None else now
    if self._first is None or step <= self._first[1]:
      return None
    t0, s0 = self._first
    return (now - t0) / (step - s0) * max(self.total - step, 0)

  def update(self, step: int, row: dict) -> None:
    if not self.enabled:
      return
    if "eval_loss" in row:  # an evaluation row: its own line, above the bar
      msg = f"step {step}: eval loss {row['eval_loss']:.4f}"
      if isinstance(row.get("eval_bpb"), (int, float)):
        msg += f", bits/byte {row['eval_bpb']:.4f}"
      (self._bar.write if self._bar is not None else print)(msg, file=self.stream)
      return
    now = time.monotonic()
    if self.tty:
      if self._bar is None:  # created at the first update: tqdm's rate then excludes compile
        self._bar = tqdm(total=self.total, initial=step, file=self.stream, unit="step",
                         dynamic_ncols=True, desc="train")
      else:
        self._bar.update(step - self._bar.n)
      self._bar.set_postfix_str(self._message(row))
    else:
      eta = self.eta(step, now)
      pct = 100.0 * step / max(self.total, 1)
      line = f"step {step}/{self.total} ({pct:.0f}%)  {self._message(row)}  eta "
      line += tqdm.format_interval(eta) if eta is not None else "--"
      print(line, file=self.stream, flush=True)
    if self._first is None:
      self._first = (now, step)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
