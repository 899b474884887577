#!/usr/bin/env python3
"""Ansible inventory script: the simulated cluster's SSH GPU hosts in `gpu_hosts`, read from its state.

The state is LLMOPS_SIM_STATE's state.json (default: the checkout's .sim), written by `make sim-up`. With the
simulator down, or a profile without GPU hosts, `gpu_hosts` is empty and `-i inventories/sim` still works.
Host keys are checked strictly against the keys the simulator generated (its own known_hosts file), for
these hosts only; nothing is added to ~/.ssh.
"""

import json
import os
import shlex
import sys
from pathlib import Path


def state_file() -> Path:
    default = Path(__file__).resolve().parent.parent.parent / ".sim"
    return Path(os.environ.get("LLMOPS_SIM_STATE") or default) / "state.json"


def inventory(state: dict) -> dict:
    hostvars = {}
    for name, host in sorted((state.get("hosts") or {}).items()):
        hostvars[name] = {
            "ansible_host": host["ip"],
            "ansible_user": host["user"],
            "ansible_ssh_private_key_file": host["key"],
            "ansible_ssh_common_args": " ".join([
                "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + shlex.quote(host["known_hosts"]),
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"]),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_become_method": "sudo",
        }
    return {"_meta": {"hostvars": hostvars}, "gpu_hosts": {"hosts": sorted(hostvars)}}


def main(argv) -> int:
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        state = {}
    if len(argv) > 1 and argv[1] == "--host":
        print(json.dumps(inventory(state)["_meta"]["hostvars"].get(argv[2] if len(argv) > 2 else "", {})))
    else:
        print(json.dumps(inventory(state), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
