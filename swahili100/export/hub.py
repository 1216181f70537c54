"""Upload an exported folder to the Hugging Face Hub (create the repo if needed).

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
