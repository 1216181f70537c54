"""`swahili100 ladder`: a scaling ladder of one model family, fitted and checked on a held-out run.

    swahili100 ladder --config configs/ladder.py:quick --workdir runs/ladder [--parallel 2] \
        [--sizes 1,2,3] [--flops 1e12,3e12,1e13] [--holdout 4:2e13] \
        -- --config.data.records_dir=data/processed --config.data.tokenizer=tok/swahili_bpe.json
    swahili100 ladder --fit-only runs/ladder [--predict 6:2e8] [--predict N=1e8,D=2e9] \
        [--budget 1e17] [--tpu v5e-8:24:0.4] [--unique-tokens 6.7e8 | --unique-tokens-from R]

The grid (isoFLOP, Hoffmann et al. 2022): for each compute budget C (training FLOPs,
flops.py's 6P + attention, the tied head included) and each size (a depth of the config's
family, `configs/ladder.py:<depth>`), one run of round(C / (FLOPs per token * B * T)) steps,
so its tokens exhaust C. Runs go through the sweep's runner: each is an ordinary run folder
`<workdir>/d<depth>-<C>`, finished ones are skipped (a killed ladder is resumed by running it
again), `--parallel N` shares the devices. A run under `ladder.min_steps` steps (mostly warmup)
is left out and named. `--config.ladder.*` flags after `--` set the grid as well.
The held-out run (the config's `ladder.holdout`, the grid's largest) trains but is not fitted.

The fit (Hoffmann et al.'s approach 3): each run's final validation bits/byte over the whole
split, L, against N = non-embedding parameters and D = training tokens:
L(N, D) = E + A / N^alpha + B / D^beta, in log space (a log-sum-exp of the three terms) with a
Huber loss (delta 1e-3) minimised by scipy's L-BFGS-B from a grid of starts. N leaves out the
embedding (Kaplan et al. 2020): at 1-10M parameters the 16k-row tied embedding is most of the
model and would bend the power law. Intervals are 90 % paired bootstraps over the runs
(scipy.stats.bootstrap, percentile); a prediction's interval also resamples the fit's
residuals (scaled by sqrt(n / (n - 5)) for the five fitted parameters), so it covers a new run's
noise, not only the curve's.

A budget (`--budget FLOPS`, or `--tpu TOPOLOGY:HOURS:MFU`: C = chips x the chip's peak bf16
FLOP/s x MFU x hours x 3600, chips and kind from aot's topology table) is planned on the point
fit: the family's depth with the lowest fitted bits/byte at D = C / FLOPs-per-token. With
`--unique-tokens U` (or the train split of a records folder), each budget also gets D / U epochs
and Muennighoff et al. 2023's data-constrained law (swahili100/repetition.py: repeated tokens,
and parameters beyond the size U supports, are worth less): the fitted law at
(N', D') for the same size, and the depth that is best under that law for C. Its intervals are
the fit's at those fixed (N', D'); R_D* and R_N* are the paper's, not refitted here.

Writes `<workdir>/ladder.json` ("runs", "fit", "holdout", "predict") and `<workdir>/plots/`
(loss vs tokens per size, isoFLOP curves, the frontier with its band).
"""

import argparse
import dataclasses
import functools
import json
import math
import os
import shlex
import sys

import numpy as np
from etils import epath
from scipy import optimize, special, stats

from swahili100 import (aot, config_lib, flops, fs, metrics, records, report, repetition,
                        sweep)
from swahili100 import model as model_lib

HUBER_DELTA = 1e-3      # Hoffmann et al.'s delta, on log-loss residuals
CONFIDENCE = 0.9
PARAMS = ("E", "A", "alpha", "B", "beta")
FAMILY_DEPTHS = range(1, 65)   # the sizes `--budget` chooses among
TPU_EXAMPLE = "e.g. --tpu v5e-8:24:0.4 (a v5e-8 for 24 hours at 40 % MFU)"


class LadderError(ValueError):
  """A grid or workdir the ladder cannot run or fit; the message says what to change."""


@dataclasses.dataclass
class Rung:
  """One run of the grid: a size of the family trained on a compute budget."""
  name: str
  depth: int
  budget: float
  steps: int
  tokens: int
  flops: float
  params: int
  params_non_embedding: int
  flops_per_token: float
  holdout: bool = False


def numbers(text: str, what: str) -> list[float]:
  try:
    return [float(x) for x in str(text).split(",") if x.strip()]
  except ValueError:
    raise LadderError(f"{what} {text!r}: expected comma-separated numbers, e.g. 1e12,3e12")


@functools.lru_cache(maxsize=256)
def family(config_path: str, depth: int, extra: tuple[str, ...]):
  """The config of one size: `<config file>:<depth>` plus the user's flags."""
  return sweep.resolve(f"{config_path}:{depth}", {}, list(extra))


def rung(config_path: str, depth: int, budget: float, extra: list[str],
         holdout: bool = False) -> Rung:
  cfg = family(config_path, depth, tuple(extra))
  m, d = cfg.model, cfg.data
  fpt = flops.flops_per_token(m, d.seq_len)
  steps = round(budget / (fpt * d.batch_size * d.seq_len))
  tokens = steps * d.batch_size * d.seq_len
  params = model_lib.num_params(m)
  return Rung(f"d{depth}-{budget:.3g}".replace("+", ""), depth, budget, steps, tokens,
              fpt * tokens, params, params - m.vocab_size * m.d_model *
              (1 if m.tie_embeddings else 2), fpt, holdout)


def plan(config_path: str, sizes, budgets, holdout: str, extra,
         min_steps: int) -> tuple[list[Rung], list[str]]:
  """(the grid's rungs, the held-out one last; notes on the sizes left out)."""
  rungs, notes = [], []
  for budget in budgets:
    for depth in sizes:
      r = rung(config_path, int(depth), budget, extra)
      if r.steps < min_steps:
        notes.append(f"{r.name}: {r.steps} steps (< {min_steps}) left out; give that budget "
                     "smaller sizes")
        continue
      rungs.append(r)
  if holdout:
    depth, _, budget = holdout.partition(":")
    try:
      r = rung(config_path, int(depth), float(budget), extra, holdout=True)
    except ValueError:
      raise LadderError(f"--holdout {holdout!r}: expected DEPTH:FLOPS, e.g. 4:2e13") from None
    if r.steps < min_steps:
      raise LadderError(f"--holdout {holdout}: {r.steps} steps (< {min_steps}); raise its FLOPs")
    rungs.append(r)
  if len([r for r in rungs if not r.holdout]) < len(PARAMS) + 1:
    raise LadderError(f"{len(rungs)} runs: the fit has {len(PARAMS)} parameters and needs at "
                      "least 6 runs besides the held-out one; add sizes or budgets")
  return rungs, notes


def command(config_path: str, r: Rung, run_dir, warmup_fraction: float, extra) -> list[str]:
  return [sys.executable, "-m", "swahili100.cli", "train", "--config",
          f"{config_path}:{r.depth}", "--workdir", str(run_dir),
          f"--config.train.num_steps={r.steps}",
          f"--config.optim.warmup_steps={max(1, round(warmup_fraction * r.steps))}", *extra]


def measured(workdir, r: Rung) -> dict:
  """The run's row of ladder.json: its rung and its final whole-split validation bits/byte."""
  rows = metrics.read_log(epath.Path(workdir) / r.name)
  evals = [e for e in metrics.eval_rows(rows) if e.get("step") == r.steps]
  if not evals or not metrics.finite(evals[-1].get("eval_bpb")):
    raise LadderError(f"{workdir}/{r.name}: no validation bits/byte at step {r.steps}; rerun the "
                      "ladder to finish it")
  return {**dataclasses.asdict(r), "bpb": float(evals[-1]["eval_bpb"])}


# ---------------------------------------------------------------- the fit


def log_loss(theta, log_n, log_d):
  """log L(N, D) for theta = (log E, log A, alpha, log B, beta)."""
  e, a, alpha, b, beta = theta
  return special.logsumexp([a - alpha * log_n, b - beta * log_d,
                            np.broadcast_to(e, np.shape(log_n))], axis=0)


STARTS = [(e, a, al, b, be) for e in (-1.0, 0.0) for a in (0.0, 5.0, 10.0)
          for al in (0.2, 0.5) for b in (0.0, 5.0, 10.0) for be in (0.2, 0.5)]
BOUNDS = [(-5.0, 3.0), (-10.0, 40.0), (0.01, 3.0), (-10.0, 40.0), (0.01, 3.0)]


def fit_theta(n, d, bpb, starts=STARTS) -> np.ndarray:
  """The Huber-loss minimiser over `starts` (L-BFGS-B, scipy, with the exact gradient)."""
  log_n, log_d, log_l = np.log(n), np.log(d), np.log(bpb)

  def objective(theta):
    e, a, alpha, b, beta = theta
    z = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    pred = special.logsumexp(z, axis=0)
    w = np.exp(z - pred)                    # d pred / d (each term's log)
    r = pred - log_l
    dr = np.clip(r, -HUBER_DELTA, HUBER_DELTA)   # Huber's derivative
    grad = np.array([dr @ w[2], dr @ w[0], -(dr * w[0]) @ log_n, dr @ w[1], -(dr * w[1]) @ log_d])
    return special.huber(HUBER_DELTA, r).sum(), grad

  def run(x0, **options):
    return optimize.minimize(objective, np.asarray(x0, float), jac=True, method="L-BFGS-B",
                             bounds=BOUNDS, options=options)

  best = min((run(s) for s in starts), key=lambda r: r.fun)
  # The valley along A-alpha and B-beta is flat: polish the best start with tight tolerances
  # (the default stops early there, which would also make bootstrap refits stick to their start).
  return run(best.x, ftol=1e-13, gtol=1e-10, maxiter=5000).x


def named(theta) -> dict:
  e, a, alpha, b, beta = theta
  return {"E": math.exp(e), "A": math.exp(a), "alpha": alpha, "B": math.exp(b), "beta": beta,
          # N_opt ~ C^a, D_opt ~ C^b for C = 6ND (Hoffmann et al. eq. 4)
          "a": beta / (alpha + beta), "b": alpha / (alpha + beta)}


def fit(runs: list[dict], targets: list[tuple[float, float]], n_boot: int = 300,
        seed: int = 0, theta=None) -> dict:
  """The fit on `runs` (N non-embedding, D tokens, bpb), its 90 % intervals, and the predicted
  bits/byte of each (N, D) of `targets` with its prediction interval. `theta`: `fit_theta` of
  the same runs when the caller has it (the 72-start fit is most of the time)."""
  n = np.array([r["params_non_embedding"] for r in runs], float)
  d = np.array([r["tokens"] for r in runs], float)
  bpb = np.array([r["bpb"] for r in runs], float)
  theta = fit_theta(n, d, bpb) if theta is None else np.asarray(theta, float)
  t_n, t_d = (np.log(np.array([t[i] for t in targets], float)) for i in (0, 1))
  keys = [*PARAMS, "a", "b"]

  def statistic(idx):
    idx = np.asarray(idx, int)
    th = fit_theta(n[idx], d[idx], bpb[idx], starts=[theta])
    return np.array([named(th)[k] for k in keys] + list(log_loss(th, t_n, t_d)))

  boot = stats.bootstrap((np.arange(len(runs)),), statistic, n_resamples=n_boot,
                         vectorized=False, confidence_level=CONFIDENCE, method="percentile",
                         rng=np.random.default_rng(seed))
  dist = np.asarray(boot.bootstrap_distribution)   # [len(keys) + len(targets), n_boot]
  resid = np.log(bpb) - log_loss(theta, np.log(n), np.log(d))
  scale = math.sqrt(len(runs) / max(len(runs) - len(PARAMS), 1))
  rng = np.random.default_rng(seed + 1)
  lo_q, hi_q = 50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)
  out = {k: {"value": named(theta)[k],
             "interval": [float(boot.confidence_interval.low[i]),
                          float(boot.confidence_interval.high[i])]} for i, k in enumerate(keys)}
  preds = []
  for j, (tn, td) in enumerate(zip(t_n, t_d)):
    draws = np.exp(dist[len(keys) + j] + scale * rng.choice(resid, dist.shape[1]))
    preds.append({"bpb": float(np.exp(log_loss(theta, tn, td))),
                  "interval": [float(np.percentile(draws, lo_q)),
                               float(np.percentile(draws, hi_q))]})
  return {"params": out, "residual_rms_log": float(np.sqrt(np.mean(resid ** 2))),
          "runs": len(runs), "bootstrap": n_boot, "predictions": preds, "theta": theta.tolist()}


# ---------------------------------------------------------------- predictions


def unique_params(theta, unique: float) -> float:
  """U_N: the size the fit makes compute-optimal for `unique` tokens, from the C = 6ND optimum
  alpha A / N^alpha = beta B / D^beta (Muennighoff et al.'s D_to_N)."""
  _, log_a, alpha, log_b, beta = theta
  log_n = (math.log(alpha) + log_a - math.log(beta) - log_b + beta * math.log(unique)) / alpha
  return math.exp(min(max(log_n, 0.0), 700.0))   # at least one parameter; no float overflow


def repeated(theta, n: float, d: float, unique: float) -> tuple[float, float]:
  """(N', D'): what N parameters and D tokens of `unique` ones are worth under repetition."""
  return (repetition.effective_params(n, unique_params(theta, unique)),
          repetition.effective_tokens(unique, d / unique))


def frontier(config_path: str, budget: float, theta, extra, unique: float | None = None) -> dict:
  """The family's compute-optimal size for `budget`: the depth whose tokens C / FLOPs-per-token
  give the lowest fitted bits/byte; with `unique` tokens, under the data-constrained law."""
  best = None
  for depth in FAMILY_DEPTHS:
    r = rung(config_path, depth, budget, extra)
    if r.tokens <= 0:
      break
    n, d = r.params_non_embedding, r.tokens
    if unique:
      n, d = repeated(theta, n, d, unique)
    pred = float(np.exp(log_loss(theta, math.log(n), math.log(d))))
    if best is None or pred < best[0]:
      best = (pred, r, n, d)
  _, r, n, d = best
  out = {"depth": r.depth, "N": r.params_non_embedding, "params": r.params, "D": r.tokens,
         "steps": r.steps}
  if unique:
    out.update(epochs=r.tokens / unique, effective_params=n, effective_tokens=d)
  return out


def tpu_budget(spec: str) -> dict:
  """`--tpu TOPOLOGY:HOURS:MFU` as {"tpu": {...}, "budget": C}, C = chips x peak x MFU x
  hours x 3600 (peak: flops.PEAK_FLOPS, dense bf16 per chip)."""
  try:
    topology, hours, mfu = spec.split(":")
    hours, mfu = float(hours), float(mfu)
  except ValueError:
    raise LadderError(f"--tpu {spec!r}: expected TOPOLOGY:HOURS:MFU, {TPU_EXAMPLE}") from None
  if topology not in aot.TOPOLOGIES and topology not in aot.ALIASES:
    raise LadderError(f"--tpu {spec!r}: unknown topology {topology!r}; one of "
                      f"{', '.join([*aot.TOPOLOGIES, *aot.ALIASES])}, {TPU_EXAMPLE}")
  if not 0 < mfu <= 1:
    raise LadderError(f"--tpu {spec!r}: MFU {mfu:g} is not a fraction in (0, 1]; {TPU_EXAMPLE}")
  if not 0 < hours < math.inf:
    raise LadderError(f"--tpu {spec!r}: hours {hours:g} must be positive; {TPU_EXAMPLE}")
  kind, chips = aot.chips(topology)
  peak = flops.published_peak(kind)
  tpu = {"topology": topology, "hours": hours, "mfu": mfu, "device_kind": kind, "chips": chips,
         "peak_flops_per_chip": peak}
  return {"tpu": tpu, "budget": chips * peak * mfu * hours * 3600}


def unique_tokens(value: float | None, records_dir: str | None) -> float | None:
  """`--unique-tokens U`, or the train split's tokens of `--unique-tokens-from RECORDS_DIR`."""
  if value is not None and records_dir:
    raise LadderError("give --unique-tokens or --unique-tokens-from, not both")
  if records_dir:
    try:
      value = records.read_manifest(records_dir).splits["train"].tokens
    except records.RecordsError as e:
      raise LadderError(f"--unique-tokens-from {records_dir}: {e}") from None
    except KeyError:
      raise LadderError(f"--unique-tokens-from {records_dir}: its manifest has no train split; "
                        "give --unique-tokens U (unique training tokens)") from None
  if value is not None and not 0 < value < math.inf:
    raise LadderError(f"--unique-tokens {value:g}: expected a positive token count, e.g. 6.7e8")
  return value


def budget_entry(config_path: str, query: dict, theta, unique, extra) -> tuple[dict, list]:
  """One `--budget` / `--tpu` entry of "predict" before its predictions, and the (N, D) points it
  needs predicted: the compute-optimal size; with `unique`, that size under repetition and the
  data-constrained optimum."""
  opt = frontier(config_path, query["budget"], theta, extra)
  entry, points = {**query, "optimal": opt}, [(opt["N"], opt["D"])]
  if unique:
    n_eff, d_eff = repeated(theta, opt["N"], opt["D"], unique)
    best = frontier(config_path, query["budget"], theta, extra, unique=unique)
    entry["data"] = {"unique_tokens": unique, "epochs": opt["D"] / unique,
                     "effective_tokens": d_eff, "effective_params": n_eff,
                     "unique_params": unique_params(theta, unique),
                     "repetition_costly": opt["D"] / unique > repetition.FREE_EPOCHS,
                     "data_constrained_optimal": best}
    points += [(n_eff, d_eff), (best["effective_params"], best["effective_tokens"])]
  return entry, points


def with_predictions(entry: dict, preds: list[dict]) -> dict:
  """`budget_entry`'s entry with its points' predicted bits/byte and intervals, in order."""
  p = iter(preds)
  first = next(p)
  out = {k: v for k, v in entry.items() if k != "data"}
  out.update(predicted_bpb=first["bpb"], interval=first["interval"])
  if "data" in entry:
    rep, best = next(p), next(p)
    data = {**entry["data"], "predicted_bpb_repeated": rep["bpb"],
            "interval_repeated": rep["interval"]}
    data["data_constrained_optimal"] = {**data["data_constrained_optimal"],
                                        "predicted_bpb": best["bpb"],
                                        "interval": best["interval"]}
    out["data"] = data
  return out


def targets_of(config_path: str, specs: list[str], extra) -> list[dict]:
  """`--predict` specs (SIZE:TOKENS or N=...,D=...) as {"spec", "N", "D"}."""
  out = []
  for spec in specs:
    try:
      if "=" in spec:
        kv = dict(p.split("=", 1) for p in spec.split(","))
        out.append({"spec": spec, "N": float(kv["N"]), "D": float(kv["D"])})
      else:
        depth, tokens = spec.split(":")
        r = rung(config_path, int(depth), 1.0, extra)
        out.append({"spec": spec, "depth": int(depth), "N": r.params_non_embedding,
                    "params": r.params, "D": float(tokens)})
    except (ValueError, KeyError):
      raise LadderError(f"--predict {spec!r}: expected DEPTH:TOKENS (e.g. 6:2e8) or "
                        "N=...,D=... (N non-embedding parameters)") from None
  return out


# ---------------------------------------------------------------- plots


def plots(workdir, rows: list[dict], result: dict, frontier_rows: list[dict]) -> list:
  """loss_vs_tokens.png, isoflop.png, frontier.png under `<workdir>/plots/`."""
  try:
    import matplotlib  # noqa: F401, PLC0415
  except ImportError:
    return []
  out, theta = epath.Path(workdir) / "plots", np.asarray(result["fit"]["theta"])
  depths = sorted({r["depth"] for r in rows})
  colour = report.colours([f"d{d}" for d in depths])
  fig, (ax,) = report.figure(1)
  for r in rows:
    train = metrics.train_rows(metrics.read_log(epath.Path(workdir) / r["name"]))
    ax.plot([t["tokens_seen"] for t in train], [t["loss"] for t in train], lw=0.8,
            color=colour[f"d{r['depth']}"], alpha=0.6)
  for d in depths:
    ax.plot([], [], color=colour[f"d{d}"], label=f"depth {d}")
  ax.set(xscale="log", xlabel="training tokens", ylabel="training loss (nats/token)",
         title="Loss vs tokens, per size")
  ax.legend()
  paths = [out / "loss_vs_tokens.png"]
  report.save_png(fig, paths[-1])

  fig, (ax,) = report.figure(1)
  budgets = sorted({r["budget"] for r in rows})
  bcol = report.colours([f"{b:.0e}" for b in budgets])
  for b in budgets:
    pts = sorted((r for r in rows if r["budget"] == b), key=lambda r: r["params_non_embedding"])
    xs = np.array([p["params_non_embedding"] for p in pts], float)
    ds = np.array([p["tokens"] for p in pts], float)
    ax.scatter(xs, [p["bpb"] for p in pts], color=bcol[f"{b:.0e}"],
               marker="*" if any(p["holdout"] for p in pts) else "o", label=f"C = {b:.0e}")
    if len(pts) > 1:   # the fitted curve through this budget's (N, D) pairs
      grid = np.geomspace(xs.min(), xs.max(), 50)
      dgrid = np.exp(np.interp(np.log(grid), np.log(xs), np.log(ds)))
      ax.plot(grid, np.exp(log_loss(theta, np.log(grid), np.log(dgrid))),
              color=bcol[f"{b:.0e}"], lw=1)
  ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="validation bits/byte",
         title="IsoFLOP curves (star: held out of the fit)")
  ax.legend()
  paths.append(out / "isoflop.png")
  report.save_png(fig, paths[-1])

  if frontier_rows:
    fig, (ax,) = report.figure(1)
    cs = [f["flops"] for f in frontier_rows]
    ax.plot(cs, [f["bpb"] for f in frontier_rows], color="k", label="fitted frontier")
    ax.fill_between(cs, [f["interval"][0] for f in frontier_rows],
                    [f["interval"][1] for f in frontier_rows], color="k", alpha=0.15,
                    label=f"{CONFIDENCE:.0%} prediction band")
    ax.scatter([r["flops"] for r in rows], [r["bpb"] for r in rows], s=12,
               c=["tab:red" if r["holdout"] else "tab:blue" for r in rows])
    ax.set(xscale="log", xlabel="training FLOPs C", ylabel="validation bits/byte",
           title="Compute-optimal frontier (red: held out)")
    ax.legend()
    paths.append(out / "frontier.png")
    report.save_png(fig, paths[-1])
  return paths


# ---------------------------------------------------------------- the command


def analyse(workdir, config_path: str, rungs: list[Rung], predict_specs, budgets_to_plan, extra,
            n_boot: int, unique: float | None = None) -> dict:
  """The fit and ladder.json's content. `budgets_to_plan`: {"budget": C} or `tpu_budget`'s dicts;
  `unique`: unique training tokens, for the epochs and the data-constrained law of each."""
  rows = [measured(workdir, r) for r in rungs]
  fitted = [r for r in rows if not r["holdout"]]
  held = [r for r in rows if r["holdout"]]
  wanted = targets_of(config_path, predict_specs, extra)
  theta0 = fit_theta(*(np.array([r[k] for r in fitted], float)
                       for k in ("params_non_embedding", "tokens", "bpb")))
  curve = sorted({*(r["flops"] for r in rows), *(q["budget"] for q in budgets_to_plan)})
  curve = list(np.geomspace(min(curve), max(curve), 12))
  optimal = [frontier(config_path, c, theta0, extra) for c in curve]
  entries = [budget_entry(config_path, q, theta0, unique, extra) for q in budgets_to_plan]
  targets = ([(r["params_non_embedding"], r["tokens"]) for r in held]
             + [(w["N"], w["D"]) for w in wanted] + [(o["N"], o["D"]) for o in optimal]
             + [pt for _, points in entries for pt in points])
  f = fit(fitted, targets, n_boot=n_boot, theta=theta0)
  preds = f.pop("predictions")
  result = {"fit": {**f.pop("params"), **f, "N": "non-embedding parameters",
                    "D": "training tokens", "L": "validation bits/byte (whole split)"},
            "runs": rows}
  if held:
    h, p = held[0], preds[0]
    result["holdout"] = {"name": h["name"], "N": h["params_non_embedding"], "D": h["tokens"],
                         "predicted_bpb": p["bpb"], "interval": p["interval"],
                         "measured_bpb": h["bpb"],
                         "inside": p["interval"][0] <= h["bpb"] <= p["interval"][1]}
  preds = preds[len(held):]
  result["predict"] = [{**w, "predicted_bpb": p["bpb"], "interval": p["interval"]}
                       for w, p in zip(wanted, preds)]
  preds = preds[len(wanted):]
  result["frontier"] = [{"flops": c, **o, "bpb": p["bpb"], "interval": p["interval"]}
                        for c, o, p in zip(curve, optimal, preds)]
  preds = preds[len(curve):]
  for entry, points in entries:
    result["predict"].append(with_predictions(entry, preds[:len(points)]))
    preds = preds[len(points):]
  result["plots"] = [str(p) for p in plots(workdir, rows, result, result["frontier"])]
  return result


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="swahili100 ladder", description=__doc__.splitlines()[0])
  p.add_argument("--config", default=None, help="the family with its grid, e.g. "
                 "configs/ladder.py:quick (its `ladder` section)")
  p.add_argument("--workdir", default=None, help="folder of the ladder's run folders")
  p.add_argument("--fit-only", default=None, metavar="WORKDIR",
                 help="refit a finished ladder's runs without training (its ladder_plan.json)")
  p.add_argument("--sizes", default=None, help="depths of the family, e.g. 1,2,3")
  p.add_argument("--flops", default=None, help="compute budgets in FLOPs, e.g. 1e12,3e12,1e13")
  p.add_argument("--holdout", default=None, help="DEPTH:FLOPS of the held-out run ('' = none)")
  p.add_argument("--predict", action="append", default=[],
                 help="DEPTH:TOKENS or N=...,D=... (N: non-embedding parameters); repeatable")
  p.add_argument("--budget", action="append", default=[], type=float,
                 help="FLOPs: the compute-optimal size, tokens and bits/byte; repeatable")
  p.add_argument("--tpu", action="append", default=[], metavar="TOPOLOGY:HOURS:MFU",
                 help="a budget as a TPU slice for HOURS at MFU (a fraction), e.g. v5e-8:24:0.4: "
                 "C = chips x peak FLOP/s x MFU x hours x 3600, planned as --budget; repeatable")
  p.add_argument("--unique-tokens", type=float, default=None, metavar="U",
                 help="unique training tokens (the ladder's tokenizer): each budget's epochs and "
                 "its data-constrained law (Muennighoff et al. 2023)")
  p.add_argument("--unique-tokens-from", default=None, metavar="RECORDS_DIR",
                 help="take U from a records folder's manifest (its train split's tokens)")
  p.add_argument("--parallel", type=int, default=None,
                 help="runs at once on this host (default: the config's ladder.parallel, else 1)")
  p.add_argument("--bootstrap", type=int, default=300, help="bootstrap resamples")
  p.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
  return p


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  extra = []
  if "--" in argv:
    argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  p = parser()
  args = p.parse_args(argv)
  workdir = args.fit_only or args.workdir
  if not workdir or not (args.fit_only or args.config):
    p.error("give --config and --workdir (train and fit) or --fit-only WORKDIR")
  plan_path = epath.Path(workdir) / "ladder_plan.json"
  try:
    queries = [tpu_budget(spec) for spec in args.tpu]   # bad specs fail before any training
    unique = unique_tokens(args.unique_tokens, args.unique_tokens_from)
    if args.fit_only:
      if not plan_path.exists():
        raise LadderError(f"{plan_path} not found: --fit-only needs a ladder that ran there")
      saved = json.loads(plan_path.read_text())
      config_path, extra = saved["config"], saved["extra"]
      rungs = [Rung(**r) for r in saved["rungs"]]
      grid = sweep.resolve(saved.get("spec", config_path), {}, extra).get("ladder") or {}
    else:
      config_path = args.config.split(":")[0]
      grid = sweep.resolve(args.config, {}, extra).get("ladder")   # --config.ladder.* apply
      if grid is None:
        raise LadderError(f"{args.config} has no `ladder` section (sizes, flops, holdout); use "
                          "configs/ladder.py:quick or give --sizes and --flops")
      sizes = numbers(args.sizes or grid.sizes, "--sizes")
      budgets = numbers(args.flops or grid.flops, "--flops")
      holdout = grid.holdout if args.holdout is None else args.holdout
      rungs, notes = plan(config_path, sizes, budgets, holdout, extra, int(grid.min_steps))
      for note in notes:
        print(f"ladder: {note}", file=sys.stderr)
      fs.write_text(str(plan_path), json.dumps(
          {"config": config_path, "spec": args.config, "extra": extra,
           "rungs": [dataclasses.asdict(r) for r in rungs]}, indent=2) + "\n")
      warmup = float(grid.get("warmup_fraction", 0.1))
      todo = []
      for r in sorted(rungs, key=lambda r: -r.flops):   # longest first: no slot idles at the end
        run_dir = epath.Path(workdir) / r.name
        cmd = command(config_path, r, run_dir, warmup, extra)
        done = sweep.finished(run_dir, r.steps)
        print(("skip (done): " if done else "") + shlex.join(cmd), flush=True)
        if not done:
          todo.append((r.name, cmd, run_dir, r.steps))
      if args.dry_run:
        return 0
      platform, devices = sweep.detect("auto")
      parallel = args.parallel or int(grid.get("parallel", 1))
      if todo and not sweep.run_all(todo, sweep.slots(platform, devices, parallel)):
        print("swahili100 ladder: some runs did not finish (above); rerun the same command to "
              "resume them", file=sys.stderr)
        return 1
    predict = [p for p in str(grid.get("predict", "")).split(";") if p] + args.predict
    budgets = numbers(grid.get("budget", ""), "ladder.budget") + args.budget
    queries = [{"budget": c} for c in budgets] + queries
    result = analyse(workdir, config_path, rungs, predict, queries, extra, args.bootstrap, unique)
  except (LadderError, config_lib.ConfigError) as e:
    print(f"swahili100 ladder: error: {e}", file=sys.stderr)
    return 2
  fs.write_text(os.path.join(str(workdir), "ladder.json"), json.dumps(result, indent=2) + "\n")
  summary(result)
  print(f"{workdir}/ladder.json")
  return 0


def summary(result: dict) -> None:
  """The fit, the held-out run and the predictions, one line each."""
  fp = result["fit"]
  print("fit: " + ", ".join(f"{k} {fp[k]['value']:.4g} [{fp[k]['interval'][0]:.3g}, "
                            f"{fp[k]['interval'][1]:.3g}]" for k in (*PARAMS, "a", "b")))
  if "holdout" in result:
    h = result["holdout"]
    print(f"held out {h['name']}: predicted {h['predicted_bpb']:.4f} bits/byte "
          f"[{h['interval'][0]:.4f}, {h['interval'][1]:.4f}], measured {h['measured_bpb']:.4f}")
  for q in result["predict"]:
    print(f"predict {asked(q)}: {q['predicted_bpb']:.4f} {bracket(q['interval'])}"
          + (f" at depth {q['optimal']['depth']}, N {q['optimal']['N']:.3g}, "
             f"D {q['optimal']['D']:.3g}" if "optimal" in q else "") + repetition_line(q))


def asked(q: dict) -> str:
  """What a "predict" entry answers, as its user asked it (the report's label, and a TPU slice's
  FLOPs)."""
  return report.prediction_label(q) + (f" (C {q['budget']:.3g})" if "tpu" in q else "")


def bracket(interval) -> str:
  return f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def repetition_line(q: dict) -> str:
  """The summary's tail for a budget under `--unique-tokens`: epochs, cost, best size."""
  if "data" not in q:
    return ""
  d, best = q["data"], q["data"]["data_constrained_optimal"]
  return (f"; {d['epochs']:.3g} epochs of {d['unique_tokens']:.3g} unique tokens, worth "
          f"{d['effective_tokens']:.3g}: {d['predicted_bpb_repeated']:.4f} "
          f"{bracket(d['interval_repeated'])}; best under repetition depth {best['depth']}, "
          f"N {best['N']:.3g}, D {best['D']:.3g} ({best['epochs']:.3g} epochs): "
          f"{best['predicted_bpb']:.4f} {bracket(best['interval'])}")


if __name__ == "__main__":
  sys.exit(main())
