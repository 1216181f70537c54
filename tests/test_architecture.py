"""The import graph, read from the source (module- and function-level imports alike): one way,
layer by layer, no cycles, and the core free of the optional data pipeline.

The layers are docs/ARCHITECTURE.md's; a new module must be placed in LAYERS.
"""

import ast
import os

from conftest import REPO

LAYERS = [
    # 0 contracts
    ["fs", "config_lib", "records", "special_tokens", "host_memory"],
    ["attention"],
    ["model"],
    # 3 the pieces a step is made of, and what feeds and watches it
    ["lm", "flops", "repetition", "optim", "sharding", "loader", "distributed", "metrics",
     "tracking", "align.chat"],
    # 4 checkpoints and the evaluation library (functions of a model, never of the loop)
    ["checkpoint", "quantized", "inference", "align.datasets", "evals", "evals.bpb", "evals.scoring", "evals.datasets",
     "evals.compare", "evals.tasks"],
    ["engine"],
    # 6 phases: one command each, and the helpers only they use
    ["train", "evaluate", "generate", "align", "align.main", "aot", "preflight",
     "hf_import",
     "report", "sweep", "ladder", "demo", "evals.harness", "evals.lm_eval_tasks.utils", "export",
     "export.main", "export.hf", "export.onnx_export", "export.gguf_export", "export.check_gguf",
     "export.quantize", "export.model_card", "export.hub"],
    ["cli"],
]
# Evaluation, generation and export use the model and mesh helpers, never the training loop.
NO_LOOP = ("evaluate", "generate", "inference", "evals", "export")
LOOP = ("engine", "train", "align.main")


def _modules():
  mods = {}
  for pkg in ("swahili100", "data_pipeline"):
    for root, _, files in os.walk(REPO / pkg):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(root, f)
          name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
          mods[name.removesuffix(".__init__")] = path
  return mods


def _imports(name: str, path: str, mods: dict) -> set[str]:
  out = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    if isinstance(node, ast.Import):
      cands = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = name.split(".")
        keep = len(parts) - node.level + (1 if path.endswith("__init__.py") else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
      cands = [base] + [f"{base}.{a.name}" for a in node.names]
    else:
      continue
    for c in cands:
      while c and c not in mods:
        c = c.rpartition(".")[0]
      if c and c != name and not name.startswith(c + "."):  # a package's own __init__
        out.add(c)
  return out


def _graph():
  mods = _modules()
  return {m: _imports(m, p, mods) for m, p in mods.items()}


def test_every_core_module_has_a_layer():
  layer_of = {m: i for i, names in enumerate(LAYERS) for m in names}
  core = [m.removeprefix("swahili100.") for m in _graph() if m.startswith("swahili100.")]
  assert sorted(m for m in core if m not in layer_of) == []


def test_imports_run_one_way():
  layer_of = {f"swahili100.{m}": i for i, names in enumerate(LAYERS) for m in names}
  upward = sorted(f"{m} (layer {layer_of[m]}) -> {t} (layer {layer_of[t]})"
                  for m, targets in _graph().items() if m in layer_of
                  for t in targets if t in layer_of and layer_of[t] > layer_of[m])
  assert upward == []


def test_no_import_cycles():
  g, cycles, state = _graph(), [], {}

  def visit(u, stack):
    state[u] = "open"
    for v in sorted(g[u]):
      if state.get(v) == "open":
        cycles.append(stack[stack.index(v):] + [v])
      elif v not in state:
        visit(v, stack + [v])
    state[u] = "done"

  for m in sorted(g):
    if m not in state:
      visit(m, [m])
  assert cycles == []


def test_core_never_imports_the_data_pipeline_and_evaluation_never_the_loop():
  g = _graph()
  to_pipeline = sorted(f"{m} -> {t}" for m, ts in g.items()
                       if m.startswith("swahili100.") and m != "swahili100.cli"
                       for t in ts if t.startswith("data_pipeline"))
  assert to_pipeline == []
  loop = {f"swahili100.{m}" for m in LOOP}
  into_loop = sorted(f"{m} -> {t}" for m, ts in g.items()
                     if m.removeprefix("swahili100.").startswith(NO_LOOP) for t in ts if t in loop)
  assert into_loop == []
