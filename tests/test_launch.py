"""The CLI dispatcher."""

from swahili100 import cli


def test_cli_lists_commands_and_refuses_unknown(capsys):
  assert cli.main(["--help"]) == 0
  assert "train-tokenizer" in capsys.readouterr().out
  assert cli.main(["trian"]) == 2
  assert "unknown command 'trian'" in capsys.readouterr().err
