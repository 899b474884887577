"""playbooks/vars/playbook_settings.yml is the one list of the playbooks' own settings: every ollama_* setting a
playbook reads is in its entry (so the type check covers it), and each is documented with its default.
Pure file checks (no cluster)."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SETTINGS = yaml.safe_load((REPO / "playbooks/vars/playbook_settings.yml").read_text())["llmops_playbook_settings"]
DOCS = {"drain": "docs/runbooks.md", "lost_node": "docs/runbooks.md", "uninstall": "docs/runbooks.md",
        "verify": "docs/models.md", "status": "docs/status.md"}
# Settings every playbook shares (the cluster, the workload's name and namespace, the plan's inputs).
SHARED = re.compile(r"^ollama_(kubeconfig|context|k8s_\w+|name|namespace|models|insecure_registries)$")


def read_settings(entry):
    playbook = (REPO / "playbooks" / f"{entry}.yml").read_text()
    if entry == "verify":
        playbook += (REPO / "playbooks/tasks/verify_restart.yml").read_text()
    return set(re.findall(r"\b(ollama_[a-z0-9_]*[a-z0-9])\s*\|\s*default\(", playbook))


@pytest.mark.parametrize("entry", sorted(SETTINGS))
def test_every_setting_a_playbook_reads_is_checked(entry):
    read = {name for name in read_settings(entry) if not SHARED.match(name)}
    if entry == "status":
        read.discard("ollama_verify_allow_cpu")  # status falls back on verify's setting, checked there
    assert read <= set(SETTINGS[entry]), sorted(read - set(SETTINGS[entry]))
    assert read, f"playbooks/{entry}.yml reads none of its settings: the pattern no longer matches"


@pytest.mark.parametrize("entry", sorted(SETTINGS))
def test_every_setting_is_documented_with_its_default(entry):
    doc = (REPO / DOCS[entry]).read_text()
    for name, spec in SETTINGS[entry].items():
        assert f"`{name}`" in doc, f"{DOCS[entry]} does not describe {name}"
        assert spec.get("description"), f"{name} has no description"
        if "default" in spec:
            line = next((line for line in doc.splitlines() if line.startswith(f"| `{name}`")), "")
            assert line, f"{DOCS[entry]} has no table row for {name}"
            shown = str(spec["default"]).lower()
            assert shown in line.lower(), f"{DOCS[entry]}: {name}'s row does not show its default {shown}: {line}"
