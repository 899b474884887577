#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/llmops/ollama,
# with kubernetes.core beside it. No ignore files: every test must pass as is.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
venv=.venv-sanity
core=$(grep -E '^ansible-core==' requirements.txt)
reqs=$(.venv/bin/python -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')
if [ ! -f "$venv/.installed" ] || [ requirements.txt -nt "$venv/.installed" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$core" $(for f in "$reqs"/sanity.*.txt; do printf -- '-r %s ' "$f"; done)
  touch "$venv/.installed"
fi
# ansible-test bootstraps pip in each test venv from a script on a host this machine cannot reach.
pip_version=$("$venv/bin/python" -c 'import re, ansible_test, os; p = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"); print(re.search(r"pip=.([0-9.]+).", open(p).read()).group(1))')
mkdir -p ~/.ansible/test/cache
cp tests/sanity/pip_bootstrap.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py

root=.cache/sanity/ansible_collections
rm -rf "$root"
mkdir -p "$root/llmops/ollama" "$root/kubernetes"
git ls-files -co --exclude-standard -- galaxy.yml README.md meta plugins roles playbooks changelogs docs tests/unit/plugins \
  | tar -cf - -T - | tar -xf - -C "$root/llmops/ollama"
cp -r "$(.venv/bin/python -c 'import ansible_collections.kubernetes.core as c, os; print(list(c.__path__)[0])')" "$root/kubernetes/core"
cd "$root/llmops/ollama"
git init -q . && git add -A
exec "$repo/$venv/bin/ansible-test" sanity --python 3.11 "$@"
