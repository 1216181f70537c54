"""A stand-in for `gcloud` in tests: records every call and answers from a script. No network.

The test puts a `gcloud` wrapper that runs this file first on PATH. Files in $FAKE_GCLOUD_DIR:
  calls.jsonl  one JSON argv per call, appended
  states       one state a line; each `describe --format=value(...)` takes the next (the last one
               repeats). NOT_FOUND fails like gcloud does for a missing resource; DONE answers
               READY (ACTIVE for a queued resource) and marks the run complete
  done         exists once DONE was answered; `storage ls` succeeds only then
$FAKE_GCLOUD_WORKERS is the worker count `describe --format=json(networkEndpoints)` reports;
the launcher's "is training alive" ssh probe (`kill -0`) succeeds only when $FAKE_GCLOUD_ALIVE=1;
the first $FAKE_GCLOUD_FAIL_CREATES creates fail as a zone without Spot capacity does.
"""

import fcntl
import json
import os
import re
import sys


def next_state(folder: str) -> str:
  path = os.path.join(folder, "states")
  with open(path, "r+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    states = [s for s in f.read().split() if s]
    state = states[0] if states else "READY"
    if len(states) > 1:
      f.seek(0)
      f.truncate()
      f.write("\n".join(states[1:]) + "\n")
  return state


def _take_failure(folder: str) -> bool:
  path = os.path.join(folder, "create_failures")
  used = int(open(path).read()) if os.path.exists(path) else 0
  if used >= int(os.environ.get("FAKE_GCLOUD_FAIL_CREATES", "0")):
    return False
  with open(path, "w") as f:
    f.write(str(used + 1))
  return True


def main(argv: list[str]) -> int:
  folder = os.environ["FAKE_GCLOUD_DIR"]
  with open(os.path.join(folder, "calls.jsonl"), "a") as f:
    f.write(json.dumps(argv) + "\n")
  words = [a for a in argv if not a.startswith("--")]
  if words[:1] == ["storage"]:
    if words[1] == "ls" and not os.path.exists(os.path.join(folder, "done")):
      print("ERROR: (gcloud.storage.ls) One or more URLs matched no objects.", file=sys.stderr)
      return 1
    return 0
  if "describe" in words and "--format=json(networkEndpoints)" in argv:
    n = int(os.environ.get("FAKE_GCLOUD_WORKERS", "1"))
    print(json.dumps({"networkEndpoints": [{"ipAddress": f"10.0.0.{i + 2}", "port": 8470}
                                           for i in range(n)]}))
    return 0
  if "describe" in words:
    state = next_state(folder)
    if state == "NOT_FOUND":
      print("ERROR: (gcloud.compute.tpus.describe) NOT_FOUND: Resource was not found",
            file=sys.stderr)
      return 1
    if state == "DONE":
      open(os.path.join(folder, "done"), "w").close()
      state = "ACTIVE" if "queued-resources" in words else "READY"
    print(state)
    return 0
  if "create" in words and _take_failure(folder):
    print("ERROR: (gcloud.compute.tpus.tpu-vm.create) There is no more capacity in the zone",
          file=sys.stderr)
    return 1
  command = next((a.split("=", 1)[1] for a in argv if a.startswith("--command=")), "")
  if command.startswith("kill -0"):
    return 0 if os.environ.get("FAKE_GCLOUD_ALIVE") == "1" else 1
  if "swahili100.preflight" in command:
    pid = int(re.search(r"--process-id (\d+)", command).group(1))
    print(json.dumps({"preflight": "ok", "process_id": pid, "num_processes": 1,
                      "device_count": 1, "versions": {}, "problems": []}))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
