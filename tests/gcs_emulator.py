"""A local Google Cloud Storage for tests: gcp-storage-emulator in this process, on 127.0.0.1.

    with gcs_emulator.serve("bkt") as env:   # env: the variables that point clients at it
      subprocess.run([...], env={**os.environ, **env})

Both storage clients of the project are pointed at it: gcsfs (what `etils.epath`, hence
swahili100.fs, metrics and Orbax's metadata use) through STORAGE_EMULATOR_HOST, and tensorstore
(Orbax's arrays) through TENSORSTORE_GCS_HTTP_URL with a test token. GCSFS's experimental
bucket-type probe is turned off: it tries gRPC first and waits 60 s against an emulator.

One shim: the emulator omits the `x-goog-generation` header on downloads, which real GCS sends
and tensorstore needs for the conditional writes of OCDBT manifests (without it the second write
of a manifest fails with "Malformed StorageGeneration"); the download handler adds it.
"""

import contextlib
import logging
import os
import socket
import sys
from http import server as http_server


def _add_generation_header():
  from gcp_storage_emulator.handlers import objects  # noqa: PLC0415
  if getattr(objects.download, "_adds_generation", False):
    return
  original = objects.download

  def download(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      response["x-goog-generation"] = str(obj["generation"])
      response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    except Exception:  # noqa: BLE001 (a missing object: the original handler answers 404)
      pass
    return original(request, response, storage, *args, **kwargs)

  download._adds_generation = True
  objects.download = download


@contextlib.contextmanager
def serve(bucket: str):
  """Starts an in-memory emulator with `bucket`; yields the client environment, also set in
  os.environ for this process while it runs."""
  _add_generation_header()  # before the server module builds its routes from the handlers
  from gcp_storage_emulator.server import create_server  # noqa: PLC0415
  logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
  s = socket.socket()
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
  s.close()
  server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
  handle_error = http_server.HTTPServer.handle_error

  def quiet(self, request, client_address):  # clients that hang up early are not errors here
    if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
      handle_error(self, request, client_address)

  http_server.HTTPServer.handle_error = quiet
  server.start()
  url = f"http://127.0.0.1:{port}"
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    yield env
  finally:
    server.stop()
    http_server.HTTPServer.handle_error = handle_error
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
