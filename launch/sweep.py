"""Phase 8, ablations: run a grid of `swahili100 train` overrides and compare the runs.

    python launch/sweep.py --config configs/debug.py --workdir runs/sweep \
        --grid optim.lr=1e-4,3e-4,1e-3 --grid data.batch_size=8,16 \
        -- --config.train.num_steps=200

Every combination trains in `<workdir>/<name>` (name from its overrides, e.g.
`optim.lr=3e-4,data.batch_size=16`); runs that already finished are not repeated, so a killed
sweep continues where it stopped. The comparison (final train loss, best eval loss and
bits-per-byte, tokens/s) goes to `<workdir>/sweep.md` and `<workdir>/sweep.csv`, best first.
"""

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys

COLUMNS = ("run", "steps", "final_loss", "eval_loss", "eval_bpb", "tokens_per_s")


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


def summarize(workdir: str) -> dict:
  """One row of the comparison, read from `<workdir>/logs/training.jsonl`."""
  path = os.path.join(workdir, "logs", "training.jsonl")
  row = {"run": os.path.basename(workdir.rstrip("/"))}
  if not os.path.exists(path):
    return row
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  train = [r for r in rows if r.get("loss") is not None]
  evals = [r for r in rows if r.get("eval_loss") is not None]
  if train:
    row.update(steps=train[-1]["step"], final_loss=train[-1]["loss"],
               tokens_per_s=train[-1].get("tokens_per_s"))
  if evals:
    best = min(evals, key=lambda r: r["eval_loss"])
    row.update(eval_loss=best["eval_loss"], eval_bpb=best.get("eval_bpb"))
  return row


def table(rows: list[dict]) -> str:
  """Markdown table, best eval loss (else final loss) first."""
  key = lambda r: (r.get("eval_loss", r.get("final_loss")) is None,  # noqa: E731
                   r.get("eval_loss", r.get("final_loss")) or 0.0)
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |" for r in sorted(rows, key=key)]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  extra = []
  if "--" in argv:
    argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="base config file, e.g. configs/debug.py")
  p.add_argument("--workdir", required=True, help="folder holding one run folder per combination")
  p.add_argument("--grid", action="append", default=[], help="section.key=v1,v2 (repeatable)")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  args = p.parse_args(argv)

  rows = []
  for overrides in combinations(parse_grid(args.grid)):
    workdir = os.path.join(args.workdir, run_name(overrides))
    cmd = [sys.executable, "-m", "swahili100.cli", "train", "--config", args.config,
           "--workdir", workdir, *(f"--config.{k}={v}" for k, v in overrides.items()), *extra]
    done = os.path.exists(os.path.join(workdir, "DONE"))
    print(("skip (done): " if done else "") + " ".join(cmd), flush=True)
    if not args.dry_run and not done:
      rc = subprocess.call(cmd)
      if rc == 0:
        open(os.path.join(workdir, "DONE"), "w").close()
      else:
        print(f"sweep: run {workdir} failed with exit {rc}; continuing", file=sys.stderr)
    rows.append(summarize(workdir))

  if not args.dry_run:
    os.makedirs(args.workdir, exist_ok=True)
    md = table(rows)
    with open(os.path.join(args.workdir, "sweep.md"), "w", encoding="utf-8") as f:
      f.write(md + "\n")
    with open(os.path.join(args.workdir, "sweep.csv"), "w", newline="", encoding="utf-8") as f:
      w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
      w.writeheader()
      w.writerows(rows)
    print(md)
  return 0


if __name__ == "__main__":
  sys.exit(main())
