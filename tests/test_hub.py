"""Hub upload against a loopback HTTP server (only the HTTP layer is replaced)."""

import base64
import http.server
import json
import threading

import pytest

from swahili100.export import hub

TOKEN = "hf_SECRETtoken1234567890abcdefSECRET"


class _Recorder(http.server.BaseHTTPRequestHandler):
  requests = []
  repo_exists = False  # answer /api/repos/create with 409 Conflict, as the Hub does

  def log_message(self, *args):  # keep the test output clean
    pass

  def _reply(self, body: dict, status=200):
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def do_POST(self):
    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
    self.requests.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
    if self.path == "/api/repos/create" and self.repo_exists:
      self._reply({"error": "You already created this model repo",
                   "url": f"http://{self.headers['Host']}/user/sw"}, 409)
    elif self.path == "/api/repos/create":
      self._reply({"url": f"http://{self.headers['Host']}/user/sw", "name": "user/sw"})
    elif self.path == "/api/validate-yaml":  # the model card's metadata check
      self._reply({"errors": [], "warnings": []})
    elif "/preupload/" in self.path:
      files = json.loads(body)["files"]
      self._reply({"files": [{"path": f["path"], "uploadMode": "regular",
                              "shouldIgnore": False} for f in files]})
    elif "/commit/" in self.path:
      host = self.headers["Host"]
      self._reply({"commitUrl": f"http://{host}/user/sw/commit/{'a' * 40}", "commitOid": "a" * 40,
                   "commitMessage": "m", "pullRequestUrl": None})
    else:
      self._reply({"error": "unexpected"}, 404)

  def do_GET(self):
    self.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
    self._reply({"error": "not found"}, 404)


@pytest.fixture
def server():
  _Recorder.requests = []
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.requests
  srv.shutdown()


@pytest.mark.parametrize("repo_exists", [False, True])
def test_upload_sends_files_and_never_leaks_token(server, tmp_path, monkeypatch, capsys, caplog,
                                                  repo_exists):
  endpoint, requests = server
  monkeypatch.setattr(_Recorder, "repo_exists", repo_exists)
  folder = tmp_path / "export"
  folder.mkdir()
  (folder / "config.json").write_text('{"model_type": "llama"}')
  (folder / "README.md").write_text("# Swahili-100\n")
  (folder / "model.safetensors").write_bytes(b"\x00\x01weights")
  monkeypatch.setenv("HF_TOKEN", TOKEN)
  caplog.set_level("DEBUG")

  url = hub.upload(str(folder), "user/sw", endpoint=endpoint)

  assert url == f"{endpoint}/user/sw/commit/{'a' * 40}"
  paths = [p for _, p, _, _ in requests]
  assert paths[0] == "/api/repos/create"
  assert json.loads(requests[0][3])["name"] == "sw"
  commit = [r for r in requests if "/commit/" in r[1]]
  assert len(commit) == 1 and commit[0][1].startswith("/api/models/user/sw/commit/main")
  lines = [json.loads(x) for x in commit[0][3].decode().splitlines() if x.strip()]
  sent = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
          for x in lines if x["key"] == "file"}
  assert sent == {"config.json": b'{"model_type": "llama"}', "README.md": b"# Swahili-100\n",
                  "model.safetensors": b"\x00\x01weights"}
  # the token authenticates every request but appears nowhere else
  assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in requests)
  out = capsys.readouterr()
  assert TOKEN not in out.out + out.err + caplog.text
  assert all(TOKEN.encode() not in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())


def test_upload_refuses_bad_repo(tmp_path):
  with pytest.raises(ValueError, match="user/name"):
    hub.upload(str(tmp_path), "no-slash")


def test_export_cli_repo_uploads_the_folder(server, tiny_records, tmp_path, monkeypatch, capsys):
  """`swahili100 export ... --repo user/sw`: the exported folder reaches the Hub's commit API."""
  from swahili100.export import main as export_main
  from tests.test_export_hf import export_config, random_model
  from tests.test_quantize import _write_run
  endpoint, requests = server
  monkeypatch.setenv("HF_TOKEN", TOKEN)
  monkeypatch.setenv("HF_ENDPOINT", endpoint)
  config = export_config(tiny_records)
  _write_run(config, random_model(config), str(tmp_path / "run"))
  out = tmp_path / "hf"
  assert export_main.main(["--checkpoint", str(tmp_path / "run"), "--format", "hf", "--output",
                           str(out), "--repo", "user/sw"]) == 0
  commit = [r for r in requests if "/commit/" in r[1]]
  assert len(commit) == 1
  sent = {json.loads(x)["value"]["path"] for x in commit[0][3].decode().splitlines()
          if x.strip() and json.loads(x)["key"] in ("file", "lfsFile")}
  assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= sent
  printed = capsys.readouterr()
  assert f"uploaded {out} to user/sw" in printed.out and TOKEN not in printed.out + printed.err
  assert all(TOKEN.encode() not in f.read_bytes() for f in out.rglob("*") if f.is_file())
