"""launch/colab.ipynb runs top to bottom on CPU at tiny sizes: data phases, a 2-run sweep, plots."""

import json
import sys

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "launch" / "colab.ipynb"
TINY = ["--config.model.d_model=32", "--config.model.num_layers=2", "--config.model.num_heads=4",
        "--config.model.num_kv_heads=2", "--config.model.head_dim=8", "--config.model.mlp_dim=64",
        "--config.data.seq_len=32", "--config.data.batch_size=8", "--config.data.prefetch=0",
        "--config.optim.warmup_steps=2", "--config.train.log_every=2",
        "--config.train.eval_every=0", "--config.train.eval_batches=2",
        "--config.train.checkpoint_every=5"]


def _parameters(nb) -> nbformat.NotebookNode:
  tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1 and tagged[0] is nb.cells[1], "the first code cell is the parameters"
  return tagged[0]


def test_parameters_cell_defaults_to_the_tpu():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  source = _parameters(nb).source
  assert 'PLATFORM = "tpu"' in source and "DEMO_PHASES = None" in source
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it clean"


@pytest.mark.slow
def test_notebook_runs_on_cpu_with_tiny_sizes(tmp_path, monkeypatch):
  # A kernel spec for this interpreter, so the kernel (and every `sys.executable` subprocess
  # the notebook starts) runs in the project's virtual environment.
  spec = tmp_path / "jupyter" / "kernels" / "swahili100-test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "swahili100 test", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  demo, work = tmp_path / "demo_out", tmp_path / "sweep"
  _parameters(nb).source = "\n".join([
      'PLATFORM = "cpu"', 'REPO_URL = ""', f"REPO_DIR = {str(REPO)!r}", "INSTALL = False",
      "RELAX_PINS = False", f"DEMO_OUT = {str(demo)!r}",
      'DEMO_PHASES = ["download", "clean", "dedup", "filter", "train-tokenizer", "tokenize"]',
      f"SWEEP_DIR = {str(work)!r}", 'SWEEP_GRID = ["optim.lr=1e-3,3e-3"]',
      'SWEEP_PARALLEL = "auto"', "SWEEP_STEPS = 10", f"SWEEP_FLAGS = {TINY!r}"])
  NotebookClient(nb, timeout=300, kernel_name="swahili100-test",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
  assert not errors
  assert (demo / "records" / "manifest.json").exists()
  for name in ("optim.lr=1e-3", "optim.lr=3e-3"):
    assert (work / name / "DONE").exists()
  for plot in ("curves.png", "optim.lr.png"):
    assert (work / "plots" / plot).stat().st_size > 5000
  shown = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(shown) == 2
  text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
  assert "2 runs, " in text and " at a time on " in text
  assert (work / "report" / "report.html").stat().st_size > 20000
