"""Evaluation: bits per byte on records or text, and the Swahili benchmark tasks.

The library behind `swahili100 evaluate` and training's evaluation hooks: functions of a model's
(graphdef, params) under a mesh, never of the training loop.

    bpb.py       the records' validation loss and bits per byte (training's validation hook)
    datasets.py  readers for the published file formats, `--data TASK=PATH|hub`, the Hub
    scoring.py   batched log-likelihoods on JAX with lm-evaluation-harness's conventions
    tasks.py     the tasks (data, prompt, choices, scoring, baselines), text bpb, training hooks
    compare.py   paired bootstrap of two evaluations
    harness.py   lm-evaluation-harness: the `swahili100` LM and the task YAMLs of lm_eval_tasks/
"""


class EvalDataError(ValueError):
  """Evaluation data that is missing or malformed; the message names the flag or file to fix."""
