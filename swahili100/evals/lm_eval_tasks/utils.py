"""lm-eval hooks of the Swahili YAMLs: views of swahili100.evals.tasks, where each task is defined.

lm-eval imports this file by path for the `!function utils.<name>` entries beside it.
"""

from swahili100.evals import harness, tasks


def _views(name: str):
  task = tasks.TASKS[name]
  return harness.dataset_loader(name), task.context, task.choices, task.gold_index


load_xcopa, context_xcopa, choices_xcopa, gold_xcopa = _views("xcopa")
load_sib200, context_sib200, choices_sib200, gold_sib200 = _views("sib200")
load_afrisenti, context_afrisenti, choices_afrisenti, gold_afrisenti = _views("afrisenti")
(load_masakhanews, context_masakhanews, choices_masakhanews,
 gold_masakhanews) = _views("masakhanews")
(load_masakhanews_text, context_masakhanews_text, choices_masakhanews_text,
 gold_masakhanews_text) = _views("masakhanews_text")
load_bpb = harness.dataset_loader("bpb")


def text_bpb(doc: dict) -> str:
  return doc["text"]
