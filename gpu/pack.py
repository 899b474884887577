#!/usr/bin/env python3
"""Pack what the GPU machine needs for gpu/run.sh into one folder (default .gpu-carry/, ignored by git).

The GPU machine has nvcc, CMake, ninja and Python 3.12 but no network and no Go, and takes at most 64 MiB:
- ollama.xz: the simulator's Ollama build (the pinned version, from the build cache; make sim-build);
- ggml-src.tar.xz: the pinned Ollama module's CMake project and ggml sources, from the Go module cache;
- wheels/: ansible-core (the pinned version) and gguf with their dependencies, for Python 3.12 on x86_64;
- ansible_collections/: this collection (its plugins, meta and galaxy.yml) and kubernetes.core;
- models/tiny-a/: the simulator's tiny model, generated with the gguf package (sim/sim/models.py);
- lib/sim_models.py: that generator, so the runner writes a larger model there;
- gpu/run.sh, gpu/runner.py; payload.json: versions, files, sizes.
Nothing it packs is committed; the caches live in ~/.cache/llmops-ollama-sim/gpu/.
"""

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 1024 * 1024
PYTHON_VERSION = '3.12'
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux1_x86_64',
             'manylinux_2_5_x86_64')
GGML_PATHS = ('CMakeLists.txt', 'CMakePresets.json', 'cmake', 'ml/backend/ggml/ggml')
COLLECTION_PATHS = ('galaxy.yml', 'meta', 'plugins')


class PackError(Exception):
    """One line: what is missing and how to get it."""


def pins():
    versions = dict(line.split('=', 1) for line in (REPO / 'sim' / 'versions.env').read_text().splitlines()
                    if '=' in line and not line.startswith('#'))
    reqs = (REPO / 'requirements.txt').read_text()
    core = re.search(r'^ansible-core==(\S+)', reqs, re.M)
    gguf = re.search(r'^gguf==(\S+)', reqs, re.M)
    if not (core and gguf):
        raise PackError('requirements.txt pins no ansible-core or gguf version')
    return versions['OLLAMA_VERSION'].strip(), core.group(1), gguf.group(1)


def cache():
    root = Path(os.environ.get('LLMOPS_SIM_CACHE') or Path.home() / '.cache' / 'llmops-ollama-sim')
    return root


def ollama_binary(version):
    path = cache() / 'bin' / ('ollama-%s' % version)
    if not path.is_file():
        raise PackError('%s is missing: build it with make sim-build' % path)
    return path


def compressed(binary):
    """The binary as xz (30 MB -> 8 MB), cached by its size and modification time."""
    stat = binary.stat()
    target = cache() / 'gpu' / ('%s-%d-%d.xz' % (binary.name, stat.st_size, int(stat.st_mtime)))
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix('.tmp')
        with open(binary, 'rb') as src, lzma.open(tmp, 'wb', preset=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(target)
    return target


def go_module(version):
    try:
        modcache = subprocess.run(['go', 'env', 'GOMODCACHE'], capture_output=True, text=True, check=True,
                                  timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        modcache = os.environ.get('GOMODCACHE') or str(Path.home() / 'go' / 'pkg' / 'mod')
    path = Path(modcache) / 'github.com' / 'ollama' / ('ollama@%s' % version)
    if not (path / 'ml' / 'backend' / 'ggml' / 'ggml').is_dir():
        raise PackError('%s has no ggml sources: run make sim-build (it downloads the module)' % path)
    return path


def wheels(core, gguf):
    """ansible-core and gguf with their dependencies for CPython 3.12 on x86_64 Linux, from PyPI (cached)."""
    target = cache() / 'gpu' / ('wheels-py%s-ansible-core-%s-gguf-%s' % (PYTHON_VERSION, core, gguf))
    if not (target / '.complete').exists():
        target.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--only-binary=:all:',
               '--python-version', PYTHON_VERSION, '--implementation', 'cp', '-d', str(target)]
        for platform in PLATFORMS:
            cmd += ['--platform', platform]
        cmd += ['ansible-core==%s' % core, 'gguf==%s' % gguf]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise PackError('pip download for Python %s failed: %s' % (PYTHON_VERSION,
                                                                      proc.stderr.strip().splitlines()[-1:]))
        (target / '.complete').write_text('')
    return sorted(target.glob('*.whl'))


def tiny_model():
    sys.path.insert(0, str(REPO / 'sim'))
    from sim import models
    generated = models.generate(cache() / 'models', ['tiny-a'])
    return generated['tiny-a']


def kubernetes_core():
    try:
        import ansible_collections.kubernetes.core as core
    except ImportError:
        raise PackError('kubernetes.core is not importable: run the packer with .venv/bin/python (make venv)')
    return Path(list(core.__path__)[0])


def tracked(paths):
    out = subprocess.run(['git', '-C', str(REPO), 'ls-files', '-co', '--exclude-standard', '--'] + list(paths),
                         capture_output=True, text=True, check=True).stdout.split()
    return [p for p in out if (REPO / p).is_file()]


def pack(out):
    ollama_version, core, gguf = pins()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / 'gpu').mkdir(parents=True)
    shutil.copy2(compressed(ollama_binary(ollama_version)), out / 'ollama.xz')
    module = go_module(ollama_version)
    with tarfile.open(out / 'ggml-src.tar.xz', 'w:xz') as tar:
        for rel in GGML_PATHS:
            if (module / rel).exists():
                tar.add(str(module / rel), arcname=rel)
    (out / 'wheels').mkdir()
    for wheel in wheels(core, gguf):
        shutil.copy2(wheel, out / 'wheels' / wheel.name)
    collection = out / 'ansible_collections' / 'llmops' / 'ollama'
    for rel in tracked(COLLECTION_PATHS):
        (collection / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, collection / rel)
    shutil.copytree(kubernetes_core(), out / 'ansible_collections' / 'kubernetes' / 'core',
                    ignore=shutil.ignore_patterns('__pycache__', 'tests', 'docs', '*.pyc'))
    tiny = tiny_model()
    (out / 'models' / 'tiny-a').mkdir(parents=True)
    for name in ('model.gguf', 'Modelfile', 'meta.json'):
        shutil.copy2(tiny / name, out / 'models' / 'tiny-a' / name)
    (out / 'lib').mkdir()
    shutil.copy2(REPO / 'sim' / 'sim' / 'models.py', out / 'lib' / 'sim_models.py')
    for name in ('run.sh', 'runner.py'):
        shutil.copy2(REPO / 'gpu' / name, out / 'gpu' / name)
    commit = subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '--'] + list(COLLECTION_PATHS)
                           + ['gpu'], capture_output=True, text=True).stdout.strip()
    files = {}
    for path in sorted(out.rglob('*')):
        if path.is_file():
            files[str(path.relative_to(out))] = path.stat().st_size
    total = sum(files.values())
    top = {}
    for name, size in files.items():
        top[name.split('/')[0] if '/' in name else name] = top.get(name.split('/')[0], 0) + size
    meta = {
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'commit': commit + ('+changes' if dirty else ''),
        'ollama_version': ollama_version,
        'ansible_core': core,
        'gguf': gguf,
        'size_bytes': total,
        'files': top,
        'tiny_a_sha256': hashlib.sha256((out / 'models' / 'tiny-a' / 'model.gguf').read_bytes()).hexdigest(),
    }
    (out / 'payload.json').write_text(json.dumps(meta, indent=2, sort_keys=True) + '\n')
    if total > LIMIT:
        raise PackError('the payload is %.1f MiB, above the %d MiB the GPU machine takes: %s' % (
            total / 1048576.0, LIMIT // 1048576, ', '.join('%s %.1f MiB' % (k, v / 1048576.0)
                                                          for k, v in sorted(top.items(), key=lambda kv: -kv[1]))))
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(REPO / '.gpu-carry'))
    args = parser.parse_args()
    try:
        meta = pack(args.out)
    except PackError as exc:
        print('gpu-pack: %s' % exc, file=sys.stderr)
        return 2
    print('gpu-pack: %s, %.1f MiB (%s)' % (args.out, meta['size_bytes'] / 1048576.0, ', '.join(
        '%s %.1f' % (k, v / 1048576.0) for k, v in sorted(meta['files'].items(), key=lambda kv: -kv[1]))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
