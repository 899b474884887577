"""Stand-in for ansible-test's pip bootstrap script, whose download host this machine cannot reach.

ansible-test runs it inside each fresh sanity virtualenv with pip's install options; it bootstraps the
pip bundled with Python (ensurepip) and installs the requested pip from the package index. ansible-test
runs pip with a scrubbed environment, so the system CA bundle is named explicitly.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_FLAGS = ("--no-setuptools", "--no-wheel")
CA_BUNDLE = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap()
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
if os.path.exists(CA_BUNDLE):
    args = ["--cert", CA_BUNDLE, *args]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
