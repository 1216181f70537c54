"""The loader trains on a `swahili100 plan-data` mixture: per-source streams drawn with the plan's
document weights, dedup clusters rehydrated, recorded in config.json."""

import gzip
import json
import os

import grain
import numpy as np
import pytest

from data_pipeline import plan_data, tokenize
from swahili100 import config_lib, loader, records, train

from conftest import documents, tiny_config, train_tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Two sources, `news` three times the documents of `blog`; blog documents in clusters of 1-6
  (dedup's dup_cluster_size), tokenized with their sources recorded."""
  root = tmp_path_factory.mktemp("mix")
  texts = documents(400, seed=3)
  for source, part in (("news", texts[:300]), ("blog", texts[300:])):
    os.makedirs(root / "filtered" / source)
    with gzip.open(root / "filtered" / source / "part-00000.jsonl.gz", "wt") as f:
      for i, text in enumerate(part):
        f.write(json.dumps({"id": f"{source}:{i}", "text": text, "source": source,
                            "dup_cluster_size": 1 + i % 6 if source == "blog" else 1}) + "\n")
  tok = str(root / "tok.json")
  train_tokenizer(tok)
  tokenize.tokenize(str(root / "filtered"), tok, str(root / "records"),
                    validation_fraction=0.05, num_shards=2)
  return root, tok


def _plan(root, rule):
  out = str(root / f"mixture-{rule}.json")
  assert plan_data.main(["--input", str(root / "filtered"), "--records", str(root / "records"),
                         "--tokens", "1e6", "--rule", rule, "--output", out]) == 0
  return out


def test_sources_are_drawn_with_the_plans_document_weights(corpus):
  root, _ = corpus
  records_dir = str(root / "records")
  index = records.read_source_index(records_dir, "train")
  plan = json.load(open(_plan(root, "muennighoff")))
  ids = grain.MapDataset.range(len(index.source))  # a record's index stands in for the record
  drawn = np.array([index.source[i] for i in loader.mixture(ids, plan, index, 0, "plan")[:20000]])
  for source_id, name in enumerate(index.names):
    share = np.mean(drawn == source_id)
    assert share == pytest.approx(plan["sources"][name]["document_weight"], abs=0.02), name


def test_rehydration_repeats_records_by_cluster_size(corpus):
  root, _ = corpus
  index = records.read_source_index(str(root / "records"), "train")
  plan = json.load(open(_plan(root, "rehydrate")))
  blog = index.names.index("blog")
  ids = grain.MapDataset.range(len(index.source))
  drawn = np.array(list(loader.mixture(ids, plan, index, 0, "plan")[:40000]))
  drawn = drawn[index.source[drawn] == blog]
  copies = plan_data.repeats(index.cluster_size, plan["config"]["rehydrate"])
  for size in (1, 2, 3, 5):  # copies 1, 2, 3, 5: draws per record in proportion
    per_record = np.mean([np.sum(drawn == i) for i in np.nonzero(
        (index.source == blog) & (index.cluster_size == size))[0]])
    one = np.mean([np.sum(drawn == i) for i in np.nonzero(
        (index.source == blog) & (index.cluster_size == 1))[0]])
    assert per_record / one == pytest.approx(copies[index.cluster_size == size][0], rel=0.2)


def test_training_on_a_mixture_records_it_and_a_bad_plan_is_refused(corpus, tmp_path):
  root, tok = corpus
  records_dir = str(root / "records")
  vocab = records.read_manifest(records_dir).vocab_size
  mixture = _plan(root, "muennighoff")
  config = tiny_config(records_dir, tok, vocab, **{"data.mixture": mixture, "train.num_steps": 3})
  assert train.run(config, str(tmp_path / "run")) == 0
  saved = json.load(open(tmp_path / "run" / "config.json"))["data"]
  assert saved["mixture"] == mixture
  assert saved["mixture_plan"]["rule"] == "muennighoff"
  assert set(saved["mixture_plan"]["document_weight"]) == {"news", "blog"}
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"rule": "muennighoff", "sources": {"wiki": {"document_weight": 1}}}))
  config = tiny_config(records_dir, tok, vocab, **{"data.mixture": str(bad)})
  with pytest.raises(config_lib.ConfigError, match="wiki"):
    loader.train_dataset(config, loader.check_manifest(config))


def test_a_mixture_file_that_is_not_a_plan_is_refused_by_name(tmp_path):
  bad = tmp_path / "mixture.json"
  bad.write_text(json.dumps({"rule": "muennighoff", "sources": {"news": {"epochs": 2}}}))
  with pytest.raises(config_lib.ConfigError, match=r"mixture.json.*\['news'\] have no numeric"):
    loader.read_mixture(str(bad))
  bad.write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="cannot read it.*swahili100 plan-data"):
    loader.read_mixture(str(bad))
  with pytest.raises(config_lib.ConfigError, match="no 'sources'"):
    bad.write_text("[]")
    loader.read_mixture(str(bad))
