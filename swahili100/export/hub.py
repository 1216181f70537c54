"""The Hugging Face Hub: upload an exported folder (creating the repo if needed), download a
model for `swahili100 import`.

The token comes from `HF_TOKEN` or the `huggingface-cli login` cache (huggingface_hub resolves
it); this module never prints, logs or writes it.
"""

import os


def upload(folder: str, repo_id: str, private: bool = False, endpoint: str | None = None,
           commit_message: str = "Upload Swahili-100 export") -> str:
  """Uploads every file under `folder` to the model repo `repo_id`; returns the commit URL."""
  from huggingface_hub import HfApi  # noqa: PLC0415 ([data]/[export] extra)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--output {folder!r} is not a folder to upload")
  if repo_id.count("/") != 1:
    raise ValueError(f"--repo {repo_id!r}: expected 'user/name'")
  api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None)
  api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
  info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                           commit_message=commit_message)
  return str(getattr(info, "commit_url", info))


# What `swahili100 import` reads of a model repo (no .bin, no ONNX/GGUF copies).
MODEL_FILES = ("config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


class HubError(RuntimeError):
  """A Hub download that failed; the message names the repo and what to do."""


def download(repo_id: str, revision: str | None = None, cache_dir: str | None = None,
             endpoint: str | None = None) -> str:
  """The local snapshot folder of model repo `repo_id` (huggingface_hub's cache; a file already
  there is not fetched again, and HF_HUB_OFFLINE=1 reads the cache only)."""
  from huggingface_hub import snapshot_download  # noqa: PLC0415 ([hf] extra)
  from huggingface_hub import errors  # noqa: PLC0415
  try:
    return snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                             endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None,
                             allow_patterns=list(MODEL_FILES))
  except (errors.GatedRepoError, errors.RepositoryNotFoundError) as e:
    raise HubError(f"Hub repo {repo_id!r} not found or not accessible ({type(e).__name__}); "
                   "check the id, accept its licence on the Hub and set HF_TOKEN") from None
  except errors.RevisionNotFoundError:
    raise HubError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
  except errors.LocalEntryNotFoundError as e:
    raise HubError(f"Hub repo {repo_id!r} could not be downloaded and is not in the cache "
                   f"({str(e).splitlines()[0]}); check the network, or download it elsewhere "
                   "and pass the folder to --hf") from None
  except errors.HfHubHTTPError as e:
    raise HubError(f"Hub download of {repo_id!r} failed: {str(e).splitlines()[0]}") from None
