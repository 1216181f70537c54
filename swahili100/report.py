"""One page on a study: training curves, data funnel, evaluation with baselines, provenance.

    swahili100 report runs/debug [runs/other ...] --output reports/debug \
        [--pipeline demo_out] [--eval demo_out/eval.json ...]

Writes `report.html` (self-contained: the plots are embedded as data URIs), `report.md` (same
content, linking the PNGs) and the PNGs themselves into `--output`. Runs are overlaid, one colour
per run. The pipeline folder (raw/ cleaned/ deduped/ filtered/ records/, each with stats.json)
defaults to the parent of the first run's `config.data.records_dir`. Evaluation files are each
run's `eval.json` plus every `--eval FILE`. The page states only what these files record.

A ladder folder (`swahili100 ladder --workdir W`, holding ladder.json) renders as the ladder's
page instead: `swahili100 report W --output DIR` gives its fit with intervals, the held-out run,
the predictions, the runs and the ladder's plots.

The plotting helpers (`plot_curves`, `plot_sweep`, `save_png`, ...) are also the sweep's.
"""

import argparse
import base64
import dataclasses
import html
import io
import json
import sys

import numpy as np
from etils import epath

from swahili100 import metrics

PHASES = ("raw", "cleaned", "deduped", "filtered", "records")
# Keys of an evaluation task that describe it rather than measure it.
TASK_INFO = ("n", "chance", "majority", "data")

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;
margin:1em 0}code,pre{background:#f6f6f6}pre{padding:.6em;overflow-x:auto;font-size:.85em}"""


@dataclasses.dataclass
class Run:
  name: str
  path: epath.Path
  rows: list[dict]
  config: dict


def _read_json(path):
  """The parsed file, or None when it is missing; a broken file raises naming it."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); regenerate it or leave it out") from None


def load_run(path, name: str | None = None) -> Run:
  path = epath.Path(path)
  rows = metrics.read_log(path)
  config = _read_json(path / "config.json") or {}
  if not rows and not config:
    raise ValueError(f"{path} is not a run folder (no logs/training.jsonl, no config.json); "
                     "pass a `swahili100 train --workdir` folder")
  return Run(name or path.name, path, rows, config)


def _unique_names(paths) -> list[str]:
  """Folder names, or parent/name where two runs share a name."""
  names = [epath.Path(p).name for p in paths]
  return [f"{epath.Path(p).parent.name}/{n}" if names.count(n) > 1 else n
          for p, n in zip(paths, names)]


# ---------------------------------------------------------------- evaluation files


def load_eval(path) -> dict:
  """`{"source", "checkpoint", "step", "tasks": {task: {metric: value, ...}}}` from an eval.json,
  the task format or the older flat one ({"loss", "bpb", "tokens", "xcopa_accuracy", ...})."""
  data = _read_json(path)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object from `swahili100 evaluate`")
  out = {"source": str(path), "checkpoint": data.get("checkpoint"), "step": data.get("step")}
  if isinstance(data.get("tasks"), dict):
    out["tasks"] = {k: v for k, v in data["tasks"].items() if isinstance(v, dict)}
    return out
  tasks, flat = {}, {k: v for k, v in data.items() if k not in ("checkpoint", "step")}
  if any(k in flat for k in ("loss", "bpb", "tokens")):
    tasks["bpb"] = {k: flat.pop(k) for k in ("bpb", "loss", "tokens") if k in flat}
  for key in [k for k in flat if k.endswith("_accuracy")]:  # xcopa_accuracy, xcopa_items
    task = key[:-len("_accuracy")]
    tasks[task] = {"acc": flat.pop(key)}
    if f"{task}_items" in flat:
      tasks[task]["n"] = flat.pop(f"{task}_items")
  if flat:
    tasks["other"] = flat
  out["tasks"] = tasks
  return out


def eval_table(evals: list[dict]) -> list[dict]:
  """One row per (file, task, metric): value, its stderr and the task's n and baselines."""
  rows = []
  for ev in evals:
    for task, values in ev["tasks"].items():
      for metric, value in values.items():
        if metric in TASK_INFO or metric.endswith("_stderr") or not metrics.finite(value):
          continue
        rows.append({"file": ev["source"], "step": ev.get("step"), "task": task,
                     "metric": metric, "value": value,
                     "stderr": values.get(f"{metric}_stderr"),
                     **{k: values.get(k) for k in TASK_INFO}})
  return rows


# ---------------------------------------------------------------- pipeline folder


def pipeline_phases(folder, records_dir=None) -> list[tuple[str, dict]]:
  """(phase, stats.json) of each phase folder present; records/ may live elsewhere (the run's
  `config.data.records_dir`, e.g. data/processed)."""
  folder = epath.Path(folder)
  found = []
  for phase in PHASES:
    candidates = [folder / phase]
    if phase == "records":
      candidates = ([epath.Path(records_dir)] if records_dir else []) + [
          folder / "records", folder / "processed"]
    for path in candidates:
      stats = _read_json(path / "stats.json")
      if isinstance(stats, dict):
        found.append((phase, {**stats, "_path": str(path)}))
        break
  return found


def default_pipeline(runs: list[Run]):
  """(folder, records_dir): the parent of the first run's records_dir, when it holds phases."""
  for run in runs:
    records = (run.config.get("data") or {}).get("records_dir")
    if records and pipeline_phases(epath.Path(records).parent, records):
      return epath.Path(records).parent, records
  return None, None


# ---------------------------------------------------------------- plots


def figure(ncols: int, width: float = 6.0, height: float = 4.2):
  # The object API with an explicit Agg canvas: no pyplot global state, no display needed.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig, fig.subplots(1, ncols, squeeze=False)[0]


def colours(names) -> dict[str, tuple]:
  """One colour per run, stable across every plot of a page."""
  from matplotlib import colormaps
  cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
  return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _eng(ax, axis="x"):
  from matplotlib.ticker import EngFormatter
  (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(EngFormatter())


def _empty(ax, text):
  ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")


def _tokens(train: list[dict], steps) -> np.ndarray:
  """Tokens seen at `steps`, interpolated from the train rows (eval rows do not record it)."""
  known = [(r["step"], r["tokens_seen"]) for r in train
           if metrics.finite(r.get("step")) and metrics.finite(r.get("tokens_seen"))]
  if not known:
    return np.full(len(steps), np.nan)
  s, t = zip(*([(0, 0)] + known))
  return np.interp(steps, s, t)


def train_seconds(train: list[dict], steps) -> np.ndarray:
  """Training wall seconds at `steps`: compilation plus each logged interval's tokens over its
  logged throughput (evaluation passes excluded), interpolated between logged steps."""
  known = [(0, 0.0, 0.0)]
  for r in train:
    if not all(metrics.finite(r.get(k)) for k in ("step", "tokens_seen", "tokens_per_s")) or \
        r["tokens_per_s"] <= 0:  # a row without a measured interval
      continue
    s0, t0, sec = known[-1]
    if len(known) == 1:
      sec += r.get("compile_s") or 0.0
    known.append((r["step"], r["tokens_seen"], sec + (r["tokens_seen"] - t0) / r["tokens_per_s"]))
  if len(known) == 1:
    return np.full(len(steps), np.nan)
  s, _, secs = zip(*known)
  return np.interp(steps, s, secs)


def plot_curves(runs: dict[str, list[dict]]):
  """Train loss and eval bits-per-byte against tokens seen, and bits-per-byte against training
  wall seconds (equal compute on one machine), one line per run."""
  fig, (ax_loss, ax_bpb, ax_wall) = figure(3, width=5.0)
  col = colours(list(runs))
  for name, rows in runs.items():
    train, evals = metrics.train_rows(rows), metrics.eval_rows(rows)
    if train:
      x = _tokens(train, [r["step"] for r in train])
      ax_loss.plot(x, [r["loss"] for r in train], color=col[name], label=name)
    evals = [r for r in evals if metrics.finite(r.get("eval_bpb"))]
    if evals:
      x = [r["tokens_seen"] if metrics.finite(r.get("tokens_seen")) else t for r, t in
           zip(evals, _tokens(train, [r["step"] for r in evals]))]
      ax_bpb.plot(x, [r["eval_bpb"] for r in evals], "o-", color=col[name], label=name)
      secs = train_seconds(train, [r["step"] for r in evals])
      if np.isfinite(secs).all():
        ax_wall.plot(secs, [r["eval_bpb"] for r in evals], "o-", color=col[name], label=name)
  for ax, title, ylabel in ((ax_loss, "training loss", "loss (nats/token)"),
                            (ax_bpb, "validation bits per byte", "bits/byte"),
                            (ax_wall, "bits per byte at equal wall time", "bits/byte")):
    ax.set(title=title, xlabel="training seconds" if ax is ax_wall else "tokens seen",
           ylabel=ylabel)
    _eng(ax)
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize="small")
    else:
      _empty(ax, "no rows logged")
  return fig


def plot_dynamics(runs: dict[str, list[dict]]):
  """Learning rate, gradient norm and tokens/s against step, one line per run."""
  fig, axes = figure(3, width=5.0)
  col = colours(list(runs))
  panels = (("lr", "learning rate"), ("grad_norm", "gradient norm"),
            ("tokens_per_s", "throughput (tokens/s)"))
  for ax, (key, title) in zip(axes, panels):
    for name, rows in runs.items():
      pts = [(r["step"], r[key]) for r in metrics.train_rows(rows) if metrics.finite(r.get(key))]
      if pts:
        ax.plot(*zip(*pts), color=col[name], label=name)
    ax.set(title=title, xlabel="step")
    ax.grid(alpha=0.3)
    if key == "tokens_per_s":
      _eng(ax, "y")
    if ax.lines:
      ax.legend(fontsize="small")
    else:
      _empty(ax, f"no {key} logged")
  return fig


def plot_funnel(phases: list[tuple[str, dict]]):
  """Documents and bytes into and out of each data phase."""
  fig, axes = figure(2)
  x = np.arange(len(phases))
  for ax, unit in zip(axes, ("docs", "bytes")):
    for i, (key, colour) in enumerate((("in", "#9ecae1"), ("out", "#3182bd"))):
      values = [(stats.get(unit) or {}).get(key, np.nan) for _, stats in phases]
      bars = ax.bar(x + (i - 0.5) * 0.4, values, 0.4, color=colour, label=key)
      ax.bar_label(bars, labels=[f"{v:,.0f}" if metrics.finite(v) else "" for v in values],
                   fontsize="x-small", rotation=90, padding=2)
    ax.set(title=f"{'documents' if unit == 'docs' else 'bytes'} per phase", xticks=x,
           xticklabels=[p for p, _ in phases])
    ax.margins(y=0.2)
    _eng(ax, "y")
    ax.legend(fontsize="small")
  return fig


def plot_drops(phases: list[tuple[str, dict]]):
  """Documents and bytes dropped by each phase, stacked by named reason."""
  fig, axes = figure(2)
  names = [p for p, _ in phases]
  reasons = sorted({r for _, s in phases for u in ("docs", "bytes")
                    for r in ((s.get(u) or {}).get("dropped") or {})})
  col = colours(reasons)
  for ax, unit in zip(axes, ("docs", "bytes")):
    bottom = np.zeros(len(phases))
    for reason in reasons:
      values = np.array([float(((s.get(unit) or {}).get("dropped") or {}).get(reason, 0))
                         for _, s in phases])
      if values.any():
        ax.bar(names, values, bottom=bottom, color=col[reason], label=reason)
        bottom += values
    ax.set(title=f"{'documents' if unit == 'docs' else 'bytes'} dropped, by reason")
    _eng(ax, "y")
    if not reasons:
      _empty(ax, "no drops recorded")
  if reasons:  # one legend for both panels, beside them, so it hides no bar
    entries = {}
    for ax in axes:
      entries.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(entries.values()), list(entries), loc="outside right upper",
               fontsize="small")
  return fig


def _number(text):
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def plot_sweep(rows: list[dict], key: str, keys: list[str]):
  """Final train loss and best eval bits-per-byte against the swept `key`, one line per setting
  of the other swept `keys`."""
  fig, axes = figure(2)
  others = [k for k in keys if k != key]
  groups = {}
  for row in rows:
    label = ",".join(f"{k}={row.get(k)}" for k in others) or "runs"
    groups.setdefault(label, []).append(row)
  values = sorted({str(r.get(key)) for r in rows}, key=lambda v: (_number(v) is None,
                                                                  _number(v) or 0.0, v))
  numeric = all(_number(v) is not None for v in values)
  position = {v: (_number(v) if numeric else i) for i, v in enumerate(values)}
  col = colours(list(groups))
  for ax, metric, title in ((axes[0], "final_loss", "final training loss"),
                            (axes[1], "eval_bpb", "best validation bits/byte")):
    for label, group in groups.items():
      pts = sorted((position[str(r.get(key))], r[metric]) for r in group
                   if metrics.finite(r.get(metric)))
      if pts:
        ax.plot(*zip(*pts), "o-", color=col[label], label=label)
    ax.set(title=title, xlabel=key)
    if numeric and all(v > 0 for v in position.values()) and (
        max(position.values()) >= 3 * min(position.values())):
      ax.set_xscale("log")  # learning rates, batch sizes: swept geometrically
    ax.set_xticks(list(position.values()), list(position))  # ticks at the swept values
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize="small")
    else:
      _empty(ax, f"no {metric} recorded")
  return fig


def save_png(fig, path, dpi: int = 100) -> bytes:
  """Writes the figure as a PNG (through epath, so gs:// works) and returns its bytes."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  data = buf.getvalue()
  epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  epath.Path(path).write_bytes(data)
  return data


# ---------------------------------------------------------------- the page


def fmt(value) -> str:
  if value is None:
    return ""
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, int):
    return f"{value:,}"
  if isinstance(value, float):
    return f"{value:.4g}" if np.isfinite(value) else str(value)
  return str(value)


def md_table(header: list[str], rows: list[list]) -> str:
  cell = lambda v: fmt(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def _compact_config(config: dict) -> str:
  """One line per section: `model: vocab_size=2048 d_model=128 ...`."""
  lines = []
  for section, values in config.items():
    if isinstance(values, dict):
      lines.append(f"{section}: " + " ".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}"
                                             for k, v in values.items()))
    else:
      lines.append(f"{section}={values}")
  return "\n".join(lines)


def _origin(prov: dict) -> str:
  if prov.get("repo"):
    return f"{prov['repo']}@{prov.get('revision', '?')}"
  return str(prov.get("url") or prov.get("path") or "")


def _summary_row(run: Run) -> list:
  s = metrics.summary(run.rows)
  speed = s.get("tokens_per_s")
  return [run.name, *(s.get(k) for k in ("steps", "tokens_seen", "final_loss", "eval_loss",
                                         "eval_bpb")), round(speed) if speed is not None else None]


def render_markdown(runs: list[Run], evals: list[dict], phases, pngs: list[str],
                    notes: list[str]) -> str:
  out = ["# Swahili-100 report", ""]
  out += [f"Runs: {', '.join(f'`{r.name}` (`{r.path}`)' for r in runs)}."]
  out += notes
  out += ["", "## Runs", "",
          md_table(["run", "steps", "tokens seen", "final train loss", "best eval loss",
                    "eval bits/byte (at best)", "median tokens/s"],
                   [_summary_row(r) for r in runs])]
  if "curves.png" in pngs:
    out += ["", "## Training curves", "", "![loss and bits per byte](curves.png)", "",
            "![learning rate, gradient norm, throughput](dynamics.png)"]
  out += ["", "## Evaluation", ""]
  table = eval_table(evals)
  if table:
    out += [md_table(["file", "step", "task", "metric", "value", "± stderr", "n", "chance",
                      "majority", "data"],
                     [[t["file"], t["step"], t["task"], t["metric"], t["value"], t["stderr"],
                       t["n"], t["chance"], t["majority"], t["data"]] for t in table])]
    out += ["", "`chance` and `majority` are the baselines the evaluation file records."]
  else:
    out += ["No evaluation file (`<run>/eval.json` or `--eval FILE`)."]
  out += ["", "## Data", ""]
  if phases:
    out += [md_table(["phase", "folder", "docs in", "docs out", "docs dropped", "bytes in",
                      "bytes out"],
                     [[p, s["_path"], *((s.get(u) or {}).get(k) for u, k in (
                         ("docs", "in"), ("docs", "out"))),
                       sum(((s.get("docs") or {}).get("dropped") or {}).values()),
                       *((s.get("bytes") or {}).get(k) for k in ("in", "out"))]
                      for p, s in phases])]
    drops = [[p, reason, n, ((s.get("bytes") or {}).get("dropped") or {}).get(reason)]
             for p, s in phases for reason, n in ((s.get("docs") or {}).get("dropped")
                                                  or {}).items()]
    if drops:
      out += ["", "Dropped, by reason:", "", md_table(["phase", "reason", "docs", "bytes"], drops)]
    out += ["", "![documents and bytes per phase](funnel.png)", "",
            "![drops by reason](drops.png)"]
    splits = dict(phases).get("records", {}).get("splits") or {}
    if splits:
      out += ["", "Token records:", "",
              md_table(["split", "documents", "tokens", "bytes"],
                       [[k, v.get("documents"), v.get("tokens"), v.get("bytes")]
                        for k, v in splits.items()])]
  else:
    out += ["No pipeline folder (pass `--pipeline DIR`, the folder holding raw/ cleaned/ ...)."]
  out += ["", "## Provenance", ""]
  sources = (dict(phases).get("raw") or {}).get("sources") or {}
  if sources:
    out += [md_table(["source", "licence", "origin", "files", "docs out", "bytes out"],
                     [[name, (s.get("provenance") or {}).get("licence"),
                       _origin(s.get("provenance") or {}),
                       len((s.get("provenance") or {}).get("files") or []) or None,
                       (s.get("docs") or {}).get("out"), (s.get("bytes") or {}).get("out")]
                      for name, s in sources.items()])]
  seen = set()
  for run in runs:
    records = (run.config.get("data") or {}).get("records_dir")
    manifest = _read_json(epath.Path(records) / "manifest.json") if records else None
    if manifest and records not in seen:
      seen.add(records)
      out += ["", f"Records `{records}`: tokenizer SHA-256 `{manifest.get('tokenizer_sha256')}` "
              f"(`{manifest.get('tokenizer_file')}`), vocabulary "
              f"{fmt(manifest.get('vocab_size'))}."]
  records_phase = dict(phases).get("records")
  if records_phase and records_phase["_path"] not in seen:
    manifest = _read_json(epath.Path(records_phase["_path"]) / "manifest.json")
    if manifest:
      out += ["", f"Records `{records_phase['_path']}`: tokenizer SHA-256 "
              f"`{manifest.get('tokenizer_sha256')}`."]
  for run in runs:
    if run.config:
      out += ["", f"Config of `{run.name}` (`{run.path}/config.json`):", "", "```",
              _compact_config(run.config), "```"]
  return "\n".join(out) + "\n"


def render_html(markdown: str, images: dict[str, bytes]) -> str:
  """The markdown as one HTML page, each image inlined as a base64 data URI."""
  from markdown_it import MarkdownIt
  md = MarkdownIt("commonmark", {"html": False}).enable("table")
  tokens = md.parse(markdown)
  for token in tokens:
    for child in token.children or []:
      if child.type == "image" and child.attrGet("src") in images:
        data = base64.b64encode(images[child.attrGet("src")]).decode("ascii")
        child.attrSet("src", f"data:image/png;base64,{data}")
  body = md.renderer.render(tokens, md.options, {})
  return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{html.escape(markdown.splitlines()[0].lstrip('# '))}</title>"
          f"<style>{CSS}</style></head>\n<body>\n{body}</body></html>\n")


LADDER = "ladder.json"


def _interval(entry: dict) -> str:
  lo, hi = entry.get("interval") or (None, None)
  return f"[{fmt(lo)}, {fmt(hi)}]"


def prediction_label(q: dict) -> str:
  """A ladder prediction's question: its spec, its TPU slice (`--tpu`) or its budget."""
  t = q.get("tpu")
  if t:
    return f"{t.get('topology')} for {fmt(t.get('hours'))} h at MFU {fmt(t.get('mfu'))}"
  return q.get("spec") or f"budget {fmt(q.get('budget'))}"


def ladder_markdown(ladder: dict, pngs: list[str]) -> str:
  """The ladder's page: what ladder.json records, nothing more."""
  fit, hold = ladder.get("fit") or {}, ladder.get("holdout") or {}
  out = ["# Swahili-100 scaling ladder", "",
         f"L(N, D) = E + A / N^alpha + B / D^beta, fitted on {fit.get('runs')} runs with "
         f"{fit.get('bootstrap')} bootstrap resamples (90 % intervals); N = {fit.get('N')}, "
         f"D = {fit.get('D')}, L = {fit.get('L')}.", "", "## Fit", "",
         md_table(["parameter", "value", "90 % interval"],
                  [[k, fit[k]["value"], _interval(fit[k])]
                   for k in ("E", "A", "alpha", "B", "beta", "a", "b") if k in fit])]
  out += ["", "`a`, `b`: the compute-optimal N and D grow as C^a and C^b."]
  if hold:
    out += ["", "## Held-out run", "",
            md_table(["run", "N", "D", "predicted bits/byte", "90 % interval", "measured",
                      "inside"],
                     [[hold.get("name"), hold.get("N"), hold.get("D"), hold.get("predicted_bpb"),
                       _interval(hold), hold.get("measured_bpb"), hold.get("inside")]])]
  rows = [[prediction_label(q),
           q.get("N", (q.get("optimal") or {}).get("N")),
           q.get("D", (q.get("optimal") or {}).get("D")),
           q.get("depth", (q.get("optimal") or {}).get("depth")), q.get("predicted_bpb"),
           _interval(q)] for q in ladder.get("predict") or []]
  if rows:
    out += ["", "## Predictions", "", md_table(["asked", "N", "D", "depth", "bits/byte",
                                                 "90 % interval"], rows)]
  out += ["", "## Runs", "",
          md_table(["run", "depth", "budget (FLOPs)", "tokens", "parameters", "non-embedding",
                    "bits/byte", "held out"],
                   [[r.get("name"), r.get("depth"), r.get("budget"), r.get("tokens"),
                     r.get("params"), r.get("params_non_embedding"), r.get("bpb"),
                     r.get("holdout")] for r in ladder.get("runs") or []])]
  if pngs:
    out += ["", "## Plots", ""] + [f"![{name[:-4].replace('_', ' ')}]({name})\n"
                                   for name in pngs]
  return "\n".join(out) + "\n"


def build_ladder(folder, output) -> epath.Path:
  """The ladder page of `folder` (its ladder.json and plots/) into `output`."""
  folder, out = epath.Path(folder), epath.Path(output)
  out.mkdir(parents=True, exist_ok=True)
  ladder = json.loads((folder / LADDER).read_text())
  images = {}
  for png in sorted((folder / "plots").glob("*.png")) if (folder / "plots").exists() else []:
    images[png.name] = png.read_bytes()
    (out / png.name).write_bytes(images[png.name])
  markdown = ladder_markdown(ladder, list(images))
  (out / "report.md").write_text(markdown)
  page = out / "report.html"
  page.write_text(render_html(markdown, images))
  return page


def build(run_paths, output, pipeline=None, eval_files=()) -> epath.Path:
  """Writes report.html, report.md and the PNGs into `output`; returns report.html's path."""
  if len(run_paths) == 1 and (epath.Path(run_paths[0]) / LADDER).exists():
    return build_ladder(run_paths[0], output)
  runs = [load_run(p, n) for p, n in zip(run_paths, _unique_names(run_paths))]
  out = epath.Path(output)
  out.mkdir(parents=True, exist_ok=True)
  notes = []
  evals = [load_eval(r.path / "eval.json") for r in runs if (r.path / "eval.json").exists()]
  evals += [load_eval(f) for f in eval_files]
  if pipeline:
    records = None
    for r in runs:  # a run's records folder may sit outside the pipeline folder
      rec = (r.config.get("data") or {}).get("records_dir")
      if rec and epath.Path(rec).parent == epath.Path(pipeline):
        records = rec
    phases = pipeline_phases(pipeline, records)
    if not phases:
      raise ValueError(f"--pipeline {pipeline}: none of {', '.join(PHASES)} holds a stats.json; "
                       "pass the folder that holds the data phases' output folders")
  else:
    folder, records = default_pipeline(runs)
    phases = pipeline_phases(folder, records) if folder else []
    if folder:
      notes.append(f"Pipeline folder `{folder}` (the parent of the records folder).")
  logs = {r.name: r.rows for r in runs}
  figures = {}
  if any(r.rows for r in runs):
    figures.update({"curves.png": plot_curves(logs), "dynamics.png": plot_dynamics(logs)})
  if phases:
    figures.update({"funnel.png": plot_funnel(phases), "drops.png": plot_drops(phases)})
  images = {name: save_png(fig, out / name) for name, fig in figures.items()}
  markdown = render_markdown(runs, evals, phases, list(images), notes)
  (out / "report.md").write_text(markdown)
  page = out / "report.html"
  page.write_text(render_html(markdown, images))
  return page


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  p = argparse.ArgumentParser(prog="swahili100 report", description=__doc__.splitlines()[0])
  p.add_argument("runs", nargs="+", help="run folders (swahili100 train --workdir), or one "
                 "ladder folder (swahili100 ladder --workdir)")
  p.add_argument("--output", required=True, help="folder for report.html, report.md, *.png")
  p.add_argument("--pipeline", default=None,
                 help="folder holding raw/ cleaned/ deduped/ filtered/ records/ "
                      "(default: parent of the first run's config.data.records_dir)")
  p.add_argument("--eval", action="append", default=[], metavar="FILE",
                 help="an evaluation JSON (swahili100 evaluate --output); repeatable")
  args = p.parse_args(argv)
  try:
    page = build(args.runs, args.output, args.pipeline, args.eval)
  except (ValueError, FileNotFoundError) as e:
    print(f"swahili100 report: error: {e}", file=sys.stderr)
    return 2
  print(f"report: {page}\n        {page.parent / 'report.md'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
