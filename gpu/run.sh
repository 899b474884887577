#!/usr/bin/env bash
# The GPU lane (docs/gpu.md), on a machine with an NVIDIA GPU: builds Ollama's CUDA backend from the carried
# ggml sources, starts the carried Ollama on 127.0.0.1 and runs the collection's modules and its VRAM estimate
# against it. The payload comes from `make gpu-pack`: beside this script when it runs from the payload
# (.gpu-carry/gpu/run.sh), else in the checkout's .gpu-carry/ (or LLMOPS_GPU_PAYLOAD).
# Without a usable GPU it prints one line saying why and exits 2.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${LLMOPS_GPU_PAYLOAD:-}" ]; then
  payload=$LLMOPS_GPU_PAYLOAD
elif [ -f "$here/../payload.json" ]; then
  payload=$(cd "$here/.." && pwd)
else
  payload=$(cd "$here/.." && pwd)/.gpu-carry
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi is not on PATH); run it on the GPU machine" >&2
  exit 2
fi
if ! listed=$(nvidia-smi -L 2>&1) || ! grep -q '^GPU [0-9]' <<<"$listed"; then
  echo "gpu-check: nvidia-smi lists no GPU: $(head -n 1 <<<"$listed")" >&2
  exit 2
fi
if [ ! -f "$payload/payload.json" ]; then
  echo "gpu-check: no payload at $payload; run make gpu-pack on a machine with the build cache and carry .gpu-carry/" >&2
  exit 2
fi
python=${LLMOPS_GPU_PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "gpu-check: no python3 on PATH" >&2
  exit 2
fi
exec "$python" "$here/runner.py" --payload "$payload" --out "${OUT:-$payload/out}" "$@"
