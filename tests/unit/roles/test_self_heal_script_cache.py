"""roles/ollama_workload/files/self_heal.sh with the model cache: the sidecar pulls by the cache's name, copies it to
the model's own name and removes the cache-named manifest. The `ollama` CLI here is a stand-in (a mock, said so: a
shell script that keeps a list file and records each call); the sidecar against real Ollama through a real cache
is in tests/integration/collection/test_model_cache.py."""

import os
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "ollama_workload" / "files" / "self_heal.sh"
FAKE_OLLAMA = r"""#!/bin/sh
# list: "NAME ID" lines in $FAKE/list; every call in $FAKE/calls
echo "$*" >>"$FAKE/calls"
case "$1" in
    list) echo "NAME ID SIZE MODIFIED"; cat "$FAKE/list" 2>/dev/null; true ;;
    pull) shift; [ "$1" = --insecure ] && shift; echo "$1 abcdefabcdef" >>"$FAKE/list" ;;
    cp) id=$(awk -v n="$2" '$1 == n { print $2 }' "$FAKE/list"); [ -n "$id" ] || exit 1; echo "$3 $id" >>"$FAKE/list" ;;
    rm) grep -v "^$2 " "$FAKE/list" >"$FAKE/list.new"; mv "$FAKE/list.new" "$FAKE/list" ;;
esac
"""


def test_the_sidecar_pulls_through_the_cache_and_keeps_the_models_name(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ollama").write_text(FAKE_OLLAMA)
    (fake / "ollama").chmod(0o755)
    via = "ollama-model-cache.ns.svc:5000/library/tiny-a:latest"
    listing = tmp_path / "models"
    listing.write_text("# header\ntiny-a:latest tiny-a:latest 0 - %s\n" % via)
    state = tmp_path / "state"
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]), FAKE=str(fake), LLMOPS_HEAL_LIST=str(listing),
               LLMOPS_HEAL_STATE=str(state), LLMOPS_HEAL_INTERVAL="1")
    proc = subprocess.Popen(["sh", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (state / "ready").exists():
            time.sleep(0.1)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert (state / "ready").exists(), out
    calls = [c for c in (fake / "calls").read_text().splitlines() if c != "list"]
    assert calls[:3] == ["pull --insecure " + via, "cp %s tiny-a:latest" % via, "rm " + via], calls
    assert (fake / "list").read_text().split() == ["tiny-a:latest", "abcdefabcdef"]
