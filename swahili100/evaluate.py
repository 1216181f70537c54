"""Phase 11: evaluate a checkpoint on the Swahili tasks, or compare two evaluations.

    swahili100 evaluate --checkpoint runs/base --tasks xcopa,sib200,afrisenti,masakhanews,bpb \
        --data xcopa=../shared/data/xcopa-sw/val.jsonl --data sib200=hub ... \
        [--limit N] [--output eval.json] [--harness swahili100|lm-eval]
    swahili100 evaluate --compare a/eval.json b/eval.json [--compare-metric acc]

Tasks (swahili100/evals/tasks.py): xcopa, sib200, afrisenti, masakhanews, masakhanews_text
(zero-shot multiple choice: acc, acc_norm, acc_bytes with standard errors, n, chance and majority
baselines) and bpb (bits per UTF-8 byte: of the records' validation split, or of a JSONL(.gz) file
of {"text": ...} documents given as --data bpb=FILE). --data TASK=hub fetches the public test
split from the Hugging Face Hub. `--harness lm-eval` runs the same tasks (and any lm-eval task)
through lm-evaluation-harness on the JAX model (swahili100/evals/harness.py).

Writes eval.json ({"checkpoint", "step", "items", "tasks": {task: figures}}; default
<workdir>/eval.json) and, beside it, eval.items.jsonl: one line per item (task, id, scores per
choice, predictions, gold). The batch runs on a ('data',) mesh of every device.
"""

import argparse
import json
import os
import sys

import jax
from flax import nnx

from swahili100 import (checkpoint, config_lib, fs, inference, lm, loader, quantized, records,
                        sharding)
from swahili100.evals import EvalDataError, bpb, compare, datasets, harness, scoring, tasks


def parse_args(argv):
  p = argparse.ArgumentParser(prog="swahili100 evaluate", description=__doc__.splitlines()[0])
  p.add_argument("--checkpoint", help="run folder, <workdir>/checkpoints/<step> or a quantized "
                 "folder")
  p.add_argument("--tasks", default=None, help=f"comma-separated, from {','.join(tasks.NAMES)} "
                 "(or lm-eval task names with --harness lm-eval)")
  p.add_argument("--data", action="append", default=[], metavar="TASK=PATH",
                 help="a task's data file in its published format, or TASK=hub (repeatable)")
  p.add_argument("--limit", type=int, default=0, help="first N items of each task (0 = all)")
  p.add_argument("--output", default=None, help="eval.json (default <workdir>/eval.json)")
  p.add_argument("--records", default=None, help="token records for bpb (default: the run's)")
  p.add_argument("--max-batches", type=int, default=-1, help="records bpb batches (-1 = all)")
  p.add_argument("--batch-size", type=int, default=32, help="rows per scoring batch")
  p.add_argument("--harness", default="swahili100", choices=["swahili100", "lm-eval"])
  p.add_argument("--hub-cache", default=None, help="huggingface_hub cache for TASK=hub")
  p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                 help="paired bootstrap of B - A over the items both scored")
  p.add_argument("--compare-metric", default="acc", choices=["acc", "acc_norm", "acc_bytes"])
  return p.parse_args(argv)


def check_data(names, specs, harness_mode):
  """Fails before loading the model when a task's data is missing."""
  for name in names:
    if name == "bpb" or (harness_mode == "lm-eval" and name not in tasks.TASKS):
      if name == "bpb" and name in specs and not fs.exists(specs[name]):
        raise EvalDataError(f"--data bpb={specs[name]}: no such file (a JSONL(.gz) file of "
                            '{"text": ...} documents)')
      continue
    task = tasks.get(name)
    if name not in specs:
      raise EvalDataError(f"--tasks {name} needs its data: --data {name}=PATH (the {task.fmt} "
                          f"file) or --data {name}=hub (the public test split)")
    if specs[name] != datasets.HUB and not fs.exists(specs[name]):
      raise EvalDataError(f"--data {name}={specs[name]}: no such file")


def _step(path: str):
  workdir, step = config_lib.split_path(path)
  if step is None and not quantized.is_quantized(path):
    step = checkpoint.latest_step(workdir)
  return step


def _records_bpb(config, graphdef, params, mesh, args) -> dict:
  config = config.copy_and_resolve_references()
  if args.records:
    config.data.records_dir = args.records
  manifest = loader.check_manifest(config)
  with jax.set_mesh(mesh):
    m = bpb.records_bpb(graphdef, params, config, manifest, mesh, args.max_batches)
  return {**m, "data": f"records:{loader.records_dir(config)} (validation)"}


def evaluate(args, names, specs) -> tuple[dict, list[dict]]:
  """({task: figures}, item rows) of the checkpoint."""
  mesh = sharding.make_mesh({"data": -1}, jax.devices())
  config, model = inference.load(args.checkpoint, mesh)
  graphdef, params = nnx.split(model, nnx.Param)
  params = jax.device_put(params, sharding.param_shardings(params, mesh))
  max_len = int(config.data.seq_len)
  out, rows = {}, []
  native = list(names)
  if args.harness == "lm-eval":
    if harness.LM_EVAL_MISSING:
      raise EvalDataError(harness.LM_EVAL_MISSING)
    import lm_eval  # noqa: PLC0415 (the [eval] extra)
    via = [n for n in names if n != "bpb" or n in specs]
    native = [n for n in names if n not in via]  # records bpb is not an lm-eval task
    adapter = harness.Swahili100LM(config=config, model=model, mesh=mesh,
                                   batch_size=args.batch_size)
    manager = harness.task_manager(specs, include_defaults=any(
        n not in tasks.NAMES for n in via))
    results = lm_eval.simple_evaluate(model=adapter, tasks=[harness.harness_name(n) for n in via],
                                      task_manager=manager, limit=args.limit or None,
                                      log_samples=True, bootstrap_iters=0)
    described = {n: tasks.describe(tasks.TASKS[n], specs[n]) if n in tasks.TASKS else specs.get(n)
                 for n in via}
    out, rows = harness.report(results, via, {k: v for k, v in described.items() if v})
  tok = lm.load_tokenizer(config.data.tokenizer)
  score_fn = tasks.jax_scorer(graphdef, params, mesh, max_len, args.batch_size,
                              scoring.min_len_for(model.config))
  for name in native:
    if name == "bpb" and "bpb" not in specs:
      out[name] = _records_bpb(config, graphdef, params, mesh, args)
    elif name == "bpb":
      docs = datasets.documents(specs[name])
      docs = docs[:args.limit] if args.limit > 0 else docs
      metrics, task_rows = tasks.text_bpb(docs, tok, score_fn, max_len)
      out[name] = {**metrics, "data": specs[name]}
      rows += task_rows
    else:
      task = tasks.get(name)
      items, described = tasks.load(task, specs[name], args.limit, args.hub_cache)
      metrics, task_rows = tasks.run(task, items, tok, score_fn)
      out[name] = {**metrics, "data": described}
      rows += task_rows
  return {n: out[n] for n in names}, rows


def summary(name: str, m: dict) -> str:
  if "acc" not in m:
    shown = {k: m[k] for k in ("bpb", "loss", "tokens", "bytes") if k in m}
    return f"{name}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in shown.items())
  fig = lambda k: (f"{k} {m[k]:.3f}" + (f" ± {m[k + '_stderr']:.3f}"  # noqa: E731
                                        if m.get(k + "_stderr") is not None else ""))
  base = (f" (n={m['n']}; chance {m['chance']:.3f}, majority {m['majority']:.3f})"
          if m.get("chance") is not None else f" (n={m.get('n')})")
  return f"{name}: {fig('acc')}, {fig('acc_norm')}{base}"


def write(path: str, report: dict, rows: list[dict]) -> str:
  """eval.json and its per-item rows beside it (local paths or gs:// URLs)."""
  items = compare.items_path(path)
  report["items"] = os.path.basename(items)
  fs.write_json(path, report)
  fs.write_text(items, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
  return items


def main(argv: list[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    if args.compare:
      a, b = (compare.load_report(p) for p in args.compare)
      for line in compare.compare(a, b, args.compare_metric):
        print(line["verdict"] + (f" (n={line['n']})" if line["n"] else ""))
      print(f"paired bootstrap: {compare.RESAMPLES:,} resamples, seed {compare.SEED}; "
            f"A = {args.compare[0]}, B = {args.compare[1]}")
      return 0
    if not args.checkpoint:
      raise EvalDataError("--checkpoint is required (or --compare A.json B.json)")
    names = ["bpb"] if args.tasks is None else [
        t.strip() for t in args.tasks.split(",") if t.strip()]
    specs = datasets.parse_specs(args.data)
    unknown = [n for n in names if n not in tasks.NAMES and args.harness != "lm-eval"]
    if unknown:
      tasks.get(unknown[0])
    check_data(names, specs, args.harness)
    figures, rows = evaluate(args, names, specs)
  except (EvalDataError, config_lib.ConfigError, records.RecordsError,
          checkpoint.CheckpointError) as e:
    print(f"swahili100 evaluate: error: {e}", file=sys.stderr)
    return 2
  report = {"checkpoint": args.checkpoint, "step": _step(args.checkpoint), "tasks": figures}
  if jax.process_index() != 0:  # every process scored the same items; one writes them
    return 0
  out = args.output or fs.join(config_lib.split_path(args.checkpoint)[0], "eval.json")
  items = write(out, report, rows)
  for name, m in figures.items():
    print(summary(name, m))
  print(f"wrote {out} and {items}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
