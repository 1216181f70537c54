"""The one file-system layer: every path the core reads or writes, local or `gs://`.

    fs.absolute("runs/x")              # '/home/me/runs/x'; 'gs://b/runs/x' stays as it is
    fs.join(workdir, "logs", "training.jsonl")
    fs.write_text(path, text)          # atomic on local disks (tmp + rename)
    fs.local_file("gs://b/tok.json")   # a cached local copy, for libraries that need a path
    fs.local_dir("gs://b/records")     # likewise for a folder (ArrayRecord reads local files)
    fs.upload_dir(tmp, "gs://b/export") # what a library wrote to a local folder, copied up

Built on `etils.epath`, the layer Orbax and Grain use, so `gs://bucket/...` works the same as a
local path everywhere (gcsfs underneath). Nothing here calls `os.path.abspath` on a URL.
"""

import hashlib
import json
import os
import shutil
import uuid

from etils import epath

Path = epath.Path


def is_remote(path) -> bool:
  """True for URLs such as gs://bucket/x (anything with a scheme)."""
  return "://" in os.fspath(path)


def absolute(path) -> str:
  """A local path made absolute, or a URL unchanged."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def join(*parts) -> str:
  return os.fspath(Path(parts[0]).joinpath(*[os.fspath(p) for p in parts[1:]]))


def exists(path) -> bool:
  return Path(path).exists()


def isdir(path) -> bool:
  return Path(path).is_dir()


def makedirs(path) -> None:
  Path(path).mkdir(parents=True, exist_ok=True)


def listdir(path) -> list[str]:
  return sorted(p.name for p in Path(path).iterdir())


def read_text(path) -> str:
  return Path(path).read_text(encoding="utf-8")


def read_bytes(path) -> bytes:
  return Path(path).read_bytes()


def write_text(path, text: str) -> None:
  """Writes `text`; local files atomically (a torn file is never seen), objects in one PUT."""
  p = Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(p):
    p.write_text(text, encoding="utf-8")
    return
  tmp = p.with_name(p.name + ".tmp")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, p)


def read_json(path):
  return json.loads(read_text(path))


def write_json(path, obj, indent: int | None = 2) -> None:
  write_text(path, json.dumps(obj, indent=indent) + "\n")


def sha256(path) -> str:
  h = hashlib.sha256()
  with Path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def upload_dir(local: str, target: str) -> None:
  """Copies the files under the local folder `local` to the folder `target` (any URL)."""
  for root, _, files in os.walk(local):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), local)
      dst = Path(target) / rel
      dst.parent.mkdir(parents=True, exist_ok=True)
      with open(os.path.join(root, name), "rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 22)


def cache_dir() -> str:
  """Where remote files are mirrored and per-host measurements kept (XDG cache convention)."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "swahili100")


def _signature(paths) -> str:
  """Names, sizes and modification times: a mirror made from other objects is not reused."""
  h = hashlib.sha256()
  for p in sorted(paths, key=os.fspath):
    st = Path(p).stat()
    h.update(f"{Path(p).name}:{st.length}:{st.mtime}\n".encode())
  return h.hexdigest()[:16]


def _mirror(url: str, signature: str) -> str:
  key = hashlib.sha256(url.encode()).hexdigest()[:16]
  return os.path.join(cache_dir(), "remote", f"{key}-{signature}")


def _copy(src: epath.Path, dst: str) -> None:
  if os.path.exists(dst):
    return
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  with src.open("rb") as fin, open(dst + ".tmp", "wb") as fout:
    shutil.copyfileobj(fin, fout, 1 << 22)
  os.replace(dst + ".tmp", dst)


def local_file(path) -> str:
  """A local path with the contents of `path`: itself when local, else a cached copy (a new
  one whenever the object's size or modification time changes)."""
  path = os.fspath(path)
  if not is_remote(path):
    return path
  dst = os.path.join(_mirror(path, _signature([path])), Path(path).name)
  _copy(Path(path), dst)
  return dst


def local_dir(path) -> str:
  """A local folder with the files of `path` (one level: what a records folder holds), cached
  by the folder's listing, so a changed folder is mirrored afresh, never mixed."""
  path = os.fspath(path)
  if not is_remote(path):
    return path
  if not Path(path).is_dir():
    raise FileNotFoundError(f"{path} is not a folder")
  files = [child for child in Path(path).iterdir() if not child.is_dir()]
  folder = _mirror(path, _signature(files))
  for child in files:
    _copy(child, os.path.join(folder, child.name))
  return folder


class StorageError(OSError):
  """A workdir this process cannot write; the message names it and what to do."""


def probe(folder) -> None:
  """Writes, reads back and deletes a small file in `folder` (made if missing), so a read-only
  mount or a bucket this account may not write is a named error in seconds, before compiling."""
  path = Path(folder) / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  nonce = uuid.uuid4().hex
  try:
    Path(folder).mkdir(parents=True, exist_ok=True)
    path.write_text(nonce)
    back = path.read_text()
    path.unlink()
  except Exception as e:  # noqa: BLE001 (OSError locally; gcsfs/etils raise their own on gs://)
    raise StorageError(f"cannot write to the workdir {folder} ({type(e).__name__}: {e}); give a "
                       "--workdir this process may write (a writable mount, or a bucket the "
                       "service account has storage.objects.create/delete on)") from None
  if back != nonce:
    raise StorageError(f"the workdir {folder} gave back other bytes than were written to "
                       f"{path.name}; check the mount or bucket")
