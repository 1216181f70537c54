"""Config files and `--config.a.b=v` overrides."""

import pytest

from swahili100 import config_lib, engine, model, train

from conftest import REPO


def _debug():
  return config_lib.load(str(REPO / "configs" / "debug.py"))


def test_overrides_apply_with_types():
  c = config_lib.apply_overrides(_debug(), [
      "--config.optim.lr=1e-3", "--config.model.num_kv_heads=1", "--config.train.num_steps",
      "300", "--config.mesh.fsdp=2", "--config.model.tie_embeddings=false"])
  assert c.optim.lr == 1e-3 and isinstance(c.optim.lr, float)
  assert c.model.num_kv_heads == 1 and c.train.num_steps == 300 and c.mesh.fsdp == 2
  assert c.model.tie_embeddings is False


def test_unknown_key_is_refused_with_close_match():
  with pytest.raises(config_lib.ConfigError, match=r"unknown config key --config.optim.lrr; "
                     r"did you mean --config.optim.lr"):
    config_lib.apply_overrides(_debug(), ["--config.optim.lrr=1e-3"])


def test_wrong_type_is_refused_naming_the_key():
  with pytest.raises(config_lib.ConfigError, match=r"--config.train.num_steps='abc': expected a int"):
    config_lib.apply_overrides(_debug(), ["--config.train.num_steps=abc"])
  with pytest.raises(config_lib.ConfigError, match=r"--config.model.tie_embeddings='maybe'"):
    config_lib.apply_overrides(_debug(), ["--config.model.tie_embeddings=maybe"])


def test_cross_field_errors_name_both_keys():
  with pytest.raises(config_lib.ConfigError, match="num_kv_heads=3 must divide .*num_heads=4"):
    config_lib.apply_overrides(_debug(), ["--config.model.num_kv_heads=3"])
  with pytest.raises(config_lib.ConfigError, match="batch_size=16 must be a multiple of .*grad_accum=3"):
    config_lib.apply_overrides(_debug(), ["--config.optim.grad_accum=3"])


def test_train_cli_reports_config_errors(capsys):
  assert train.main(["--config", "configs/debug.py", "--workdir", "/tmp/x",
                     "--config.model.nope=1"]) == 2
  assert "unknown config key --config.model.nope" in capsys.readouterr().err


def test_base_config_is_about_100m_parameters():
  c = config_lib.load(str(REPO / "configs" / "swahili_base.py"))
  n = model.num_params(c.model)
  assert 95e6 < n < 115e6
  assert f"{n:,}" in open(REPO / "configs" / "swahili_base.py").read()  # docstring states it


def test_small_config_and_its_ablation_variant_are_what_research_md_records():
  small = config_lib.load(str(REPO / "configs" / "small.py"))
  abl = config_lib.load(str(REPO / "configs" / "small.py") + ":ablation")
  assert model.num_params(small.model) == 8_128_768  # the exported card's figure
  assert f"{model.num_params(small.model) / 1e6:.1f}M-parameter" in open(
      REPO / "configs" / "small.py").read()
  assert round(model.num_params(abl.model) / 1e6, 1) == 5.8  # docs/RESEARCH.md, ablations
  # the sweeps' baseline: 2 layers, SwiGLU 768, batch 16, whole validation split
  assert (abl.model.num_layers, abl.model.mlp_dim, abl.data.batch_size,
          abl.train.eval_batches, abl.train.num_steps) == (2, 768, 16, -1, 256)
  assert small.data.batch_size * small.data.seq_len * small.train.num_steps == 4_300_800
  # the recipe the 2026-12-06 ablations chose; the ablation variant keeps the AdamW baseline
  assert (small.optim.name, small.optim.muon_lr, small.optim.embed_lr) == ("muon", 0.04, 0.01)
  assert (abl.optim.name, abl.optim.lr, abl.optim.embed_lr) == ("adamw", 2e-3, 0.0)


def test_a_loaded_config_gains_no_field_and_the_run_record_is_apart():
  config = config_lib.apply_overrides(_debug(), ["--config.optim.lr=1e-3"])
  with pytest.raises(AttributeError):
    config.runtime = {"platform": "cpu"}   # locked: resolved values go to config.json only
  rec = engine.recorded(config, {"runtime": {"platform": "cpu"}, "data.records_dir": "/abs"})
  assert rec.runtime.platform == "cpu" and rec.data.records_dir == "/abs"
  assert "runtime" not in config and config.data.records_dir != "/abs"
