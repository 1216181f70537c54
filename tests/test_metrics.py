"""training.jsonl reading and writing, TensorBoard event files, resume trimming, progress lines."""

import io
import json

import pytest
from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
from tensorboard.util import tensor_util

from swahili100 import metrics


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
  """Scalars as TensorBoard's Python loaders read them; both must agree."""
  acc = event_accumulator.EventAccumulator(str(logdir))
  acc.Reload()
  out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
  plugin = plugin_event_accumulator.EventAccumulator(str(logdir))  # what `tensorboard` serves
  plugin.Reload()
  assert out == {tag: [(e.step, pytest.approx(float(tensor_util.make_ndarray(e.tensor_proto))))
                       for e in plugin.Tensors(tag)] for tag in plugin.Tags()["tensors"]}
  return out


def _train_row(step, loss):
  return {"step": step, "loss": loss, "lr": 1e-3 * step, "grad_norm": 0.5,
          "tokens_per_s": 1000.0 + step, "tokens_seen": 256 * step, "compile_s": 2.0}


def test_read_log_skips_a_torn_last_line_and_names_a_bad_middle_one(tmp_path):
  assert metrics.read_log(tmp_path) == []
  (tmp_path / "logs").mkdir()
  log = tmp_path / "logs" / "training.jsonl"
  log.write_text('{"step": 1, "loss": 3.0}\n\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo')
  assert [r["step"] for r in metrics.read_log(tmp_path)] == [1, 2]
  log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r"training.jsonl line 2 is not JSON.*delete or repair"):
    metrics.read_log(str(tmp_path))


def test_writer_writes_jsonl_and_tensorboard_scalars(tmp_path):
  with metrics.MetricsWriter(tmp_path, enabled=True) as w:
    for step in (1, 2, 3):
      w.write(_train_row(step, 4.0 - step))
    w.write({"step": 3, "eval_loss": 1.5, "eval_bpb": 0.75, "eval_tokens": 99,
             "note": "text", "ok": True, "missing": None})
  rows = metrics.read_log(tmp_path)
  assert [r["step"] for r in rows] == [1, 2, 3, 3] and rows[-1]["note"] == "text"
  tb = _scalars(tmp_path / "logs")
  assert tb["loss"] == [(1, 3.0), (2, 2.0), (3, 1.0)]
  assert tb["eval_bpb"] == [(3, 0.75)] and tb["eval_tokens"] == [(3, 99.0)]
  assert tb["tokens_per_s"][0] == (1, 1001.0)
  assert not {"note", "ok", "missing", "step"} & set(tb)


def test_resume_drops_the_earlier_attempts_later_rows(tmp_path):
  with metrics.MetricsWriter(tmp_path, enabled=True) as w:
    for step in range(1, 7):
      w.write(_train_row(step, 10.0 + step))
  with open(tmp_path / "logs" / "training.jsonl", "a") as f:
    f.write('{"step": 7, "lo')  # the crash tore the last line
  with metrics.MetricsWriter(tmp_path, enabled=True, resume_step=3) as w:
    for step in (4, 5):
      w.write(_train_row(step, 20.0 + step))
  rows = metrics.read_log(tmp_path)
  assert [(r["step"], r["loss"]) for r in rows] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0),
                                                    (5, 25.0)]
  assert (tmp_path / "logs" / "training.jsonl").read_text().endswith("}\n")
  assert _scalars(tmp_path / "logs")["loss"] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0),
                                                 (5, 25.0)]


def test_disabled_writer_writes_nothing(tmp_path):
  with metrics.MetricsWriter(tmp_path / "run", enabled=False) as w:
    w.write(_train_row(1, 3.0))
    w.flush()
  assert not (tmp_path / "run").exists()


def test_cloud_scheme_rewrites_the_log_on_flush(tmp_path, monkeypatch):
  # The gs:// code path (keep rows, rewrite the object, copy event files up) run on a local
  # folder: every call it makes goes through epath, exactly as it would on GCS.
  monkeypatch.setattr(metrics.fs, "is_remote", lambda path: True)
  log = tmp_path / "logs" / "training.jsonl"
  w = metrics.MetricsWriter(tmp_path, enabled=True, flush_secs=3600)
  w.write(_train_row(1, 3.0))
  assert not log.exists()  # nothing uploaded before a flush
  w.flush()
  assert [r["step"] for r in metrics.read_log(tmp_path)] == [1]
  w.write(_train_row(2, 2.0))
  w.close()
  assert [r["loss"] for r in metrics.read_log(tmp_path)] == [3.0, 2.0]
  assert _scalars(tmp_path / "logs")["loss"] == [(1, 3.0), (2, 2.0)]
  assert not list(tmp_path.glob("logs/*.tmp"))


def test_cloud_scheme_flushes_by_itself_after_flush_secs(tmp_path, monkeypatch):
  monkeypatch.setattr(metrics.fs, "is_remote", lambda path: True)
  with metrics.MetricsWriter(tmp_path, enabled=True, tensorboard=False, flush_secs=0) as w:
    w.write(_train_row(1, 3.0))
    assert json.loads((tmp_path / "logs" / "training.jsonl").read_text())["step"] == 1


def test_progress_plain_lines_have_loss_throughput_and_eta(monkeypatch):
  clock = iter([100.0, 110.0, 120.0])
  monkeypatch.setattr(metrics.time, "monotonic", lambda: next(clock))
  out = io.StringIO()
  p = metrics.Progress(50, 0, enabled=True, stream=out)
  p.update(10, _train_row(10, 3.25))
  p.update(20, _train_row(20, 2.5))
  p.update(20, {"step": 20, "eval_loss": 2.4, "eval_bpb": 1.1})
  p.update(30, _train_row(30, 2.0))
  p.close()
  lines = out.getvalue().splitlines()
  assert lines[0] == "step 10/50 (20%)  loss 3.2500  1,010 tok/s  eta --"
  assert lines[1] == "step 20/50 (40%)  loss 2.5000  1,020 tok/s  eta 00:30"  # 1 s/step, 30 left
  assert lines[2] == "step 20: eval loss 2.4000, bits/byte 1.1000"
  assert lines[3].endswith("eta 00:20")


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_draws_a_bar_on_a_terminal_and_nothing_when_disabled():
  out = _Terminal()
  p = metrics.Progress(40, 0, enabled=True, stream=out)
  p.update(10, _train_row(10, 3.0))
  p.update(20, _train_row(20, 2.0))
  p.close()
  text = out.getvalue()
  assert "\r" in text and "20/40" in text and "loss 2.0000" in text and "tok/s" in text
  quiet = _Terminal()
  q = metrics.Progress(40, 0, enabled=False, stream=quiet)
  q.update(10, _train_row(10, 3.0))
  q.close()
  assert quiet.getvalue() == ""
