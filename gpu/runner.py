#!/usr/bin/env python3
"""The GPU lane's runner, on the machine with the GPU (started by gpu/run.sh; see docs/gpu.md).

One whole cycle, nothing kept from an earlier run: build the ggml CUDA backend of the pinned Ollama for the
card nvidia-smi reports, lay it out as Ollama's Linux release does, start the carried Ollama on 127.0.0.1,
create the models, run the collection's own modules on it by URL (gpu_host_info, ollama_info,
ollama_generate_check on a model fully in VRAM, one forced to the CPU and one partly offloaded), then load a
model under several context lengths, OLLAMA_NUM_PARALLEL values and KV cache types and set the collection's
VRAM estimate (plugins/module_utils/vram.py) against /api/ps and the memory the runner process really holds.
Everything lands in OUT/results.json; OUT/summary.txt is what it printed.

Standard library only (numpy and the gguf wheel for the generated model, ansible-core from the carried
wheels for the modules).
"""

import argparse
import ctypes
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

HOST = '127.0.0.1:11434'
URL = 'http://' + HOST
# A generated llama model big enough for real KV cache and graph sizes (about 1.7 GB in f16), with a long
# trained context so the context cap shows.
MEDIUM_NAME = 'gpu-medium'
MEDIUM = dict(seed=5, vocab=32000, n_embd=2048, n_layer=16, n_head=16, n_head_kv=4, n_ff=5632)
MEDIUM_CONTEXT = 32768
PARTIAL_LAYERS = 8  # of the medium model's 16 layers + output
MIB = 1024 * 1024
GIB = 1024 * MIB
# The collection's server settings (roles/ollama_workload/defaults/main.yml) for the module checks.
WORKLOAD_ENV = {'OLLAMA_NUM_PARALLEL': '2', 'OLLAMA_CONTEXT_LENGTH': '4096', 'OLLAMA_FLASH_ATTENTION': '1'}


def calibration_cases():
    """(label, model, env) for the estimate-versus-measured table; each runs on a freshly started server."""
    cases = []
    for parallel in (1, 4):
        for ctx in (2048, 8192, 32768):
            cases.append(('P%d ctx %d' % (parallel, ctx), MEDIUM_NAME,
                          {'OLLAMA_NUM_PARALLEL': str(parallel), 'OLLAMA_CONTEXT_LENGTH': str(ctx)}))
    cases.append(('P1 ctx 65536 (capped)', MEDIUM_NAME, {'OLLAMA_NUM_PARALLEL': '1', 'OLLAMA_CONTEXT_LENGTH': '65536'}))
    cases.append(('P4 ctx 32768 q8_0 no FA', MEDIUM_NAME, {
        'OLLAMA_NUM_PARALLEL': '4', 'OLLAMA_CONTEXT_LENGTH': '32768', 'OLLAMA_KV_CACHE_TYPE': 'q8_0'}))
    for kv in ('f16', 'q8_0', 'q4_0'):
        cases.append(('P4 ctx 32768 FA %s' % kv, MEDIUM_NAME, {
            'OLLAMA_NUM_PARALLEL': '4', 'OLLAMA_CONTEXT_LENGTH': '32768', 'OLLAMA_FLASH_ATTENTION': '1',
            'OLLAMA_KV_CACHE_TYPE': kv}))
    cases.append(('P1 ctx 2048 FA f16', MEDIUM_NAME, {
        'OLLAMA_NUM_PARALLEL': '1', 'OLLAMA_CONTEXT_LENGTH': '2048', 'OLLAMA_FLASH_ATTENTION': '1'}))
    cases.append(('P4 ctx 8192 FA q8_0', MEDIUM_NAME, {
        'OLLAMA_NUM_PARALLEL': '4', 'OLLAMA_CONTEXT_LENGTH': '8192', 'OLLAMA_FLASH_ATTENTION': '1',
        'OLLAMA_KV_CACHE_TYPE': 'q8_0'}))
    cases.append(('collection defaults', MEDIUM_NAME, dict(WORKLOAD_ENV)))
    cases.append(('tiny-a P1 (model num_ctx)', 'tiny-a', {'OLLAMA_NUM_PARALLEL': '1', 'OLLAMA_CONTEXT_LENGTH': '8192'}))
    cases.append(('tiny-a P4', 'tiny-a', {'OLLAMA_NUM_PARALLEL': '4'}))
    # head size 16 (the simulator's tiny models) has no CUDA flash-attention kernel: the runner aborts
    cases.append(('tiny-a FA (collection defaults)', 'tiny-a', dict(WORKLOAD_ENV, expect_error='1')))
    # OLLAMA_GPU_OVERHEAD leaves Ollama ~1.2 GiB: the estimate must predict the same partial placement.
    cases.append(('P1 ctx 8192, 1.2 GiB left', MEDIUM_NAME, {
        'OLLAMA_NUM_PARALLEL': '1', 'OLLAMA_CONTEXT_LENGTH': '8192', 'OLLAMA_GPU_OVERHEAD': 'LEAVE:1288490188'}))
    return cases


class Runner(object):
    def __init__(self, payload, out):
        self.payload = Path(payload).resolve()
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(os.environ.get('LLMOPS_GPU_WORK') or '/tmp/llmops-gpu-lane')
        self.started = time.time()
        self.lines = []
        self.results = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'steps': {}, 'ok': False}
        self.server = None
        self.server_log = None
        self.meta = json.loads((self.payload / 'payload.json').read_text())
        self.results['payload'] = {k: self.meta.get(k) for k in ('created', 'commit', 'ollama_version', 'size_bytes',
                                                                 'files')}

    # ------------------------------------------------------------ output

    def say(self, text):
        line = '[%6.1fs] %s' % (time.time() - self.started, text)
        print(line, flush=True)
        self.lines.append(line)

    def step(self, name, func, *args):
        start = time.time()
        self.say('%s ...' % name)
        try:
            value = func(*args)
            self.results['steps'][name] = {'ok': True, 'seconds': round(time.time() - start, 1)}
            self.save()
            return value
        except Exception as exc:  # every failure is recorded and ends the run with the results so far
            self.results['steps'][name] = {'ok': False, 'seconds': round(time.time() - start, 1),
                                           'error': '%s: %s' % (type(exc).__name__, exc)}
            self.say('%s FAILED: %s' % (name, exc))
            self.results['traceback'] = traceback.format_exc()
            raise

    def save(self):
        self.results['seconds'] = round(time.time() - self.started, 1)
        (self.out / 'results.json').write_text(json.dumps(self.results, indent=2, sort_keys=True) + '\n')
        (self.out / 'summary.txt').write_text('\n'.join(self.lines) + '\n')

    # ------------------------------------------------------------ the card

    def gpu_facts(self):
        query = run(['nvidia-smi', '--query-gpu=index,name,uuid,memory.total,memory.used,driver_version,'
                     'persistence_mode,compute_cap', '--format=csv,noheader,nounits'])
        gpus = []
        for line in query.strip().splitlines():
            f = [x.strip() for x in line.split(',')]
            gpus.append({'index': int(f[0]), 'name': f[1], 'uuid': f[2], 'memory_total_mib': int(f[3]),
                         'memory_used_mib': int(f[4]), 'driver_version': f[5], 'persistence_mode': f[6],
                         'compute_cap': f[7]})
        text = run(['nvidia-smi'])
        cuda = re.search(r'CUDA Version:\s*([0-9.]+)', text)
        nvcc = run(['nvcc', '--version'], check=False) if shutil.which('nvcc') else ''
        facts = {'gpus': gpus, 'cuda_version': cuda.group(1) if cuda else None,
                 'nvcc': (re.search(r'release ([0-9.]+), V([0-9.]+)', nvcc) or [None, None])[2] if nvcc else None,
                 'free_bytes': cuda_free_bytes()}
        (self.out / 'nvidia-smi.txt').write_text(text)
        self.results['gpu'] = facts
        g = gpus[0]
        self.say('GPU %s, %d MiB, driver %s, CUDA %s, compute %s, CUDA free %s of %s' % (
            g['name'], g['memory_total_mib'], g['driver_version'], facts['cuda_version'], g['compute_cap'],
            human((facts['free_bytes'] or {}).get('free')), human((facts['free_bytes'] or {}).get('total'))))
        return facts

    # ------------------------------------------------------------ build and layout

    def unpack(self):
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / 'root' / 'bin').mkdir(parents=True)
        binary = self.work / 'root' / 'bin' / 'ollama'
        with lzma.open(self.payload / 'ollama.xz') as src, open(binary, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        binary.chmod(0o755)
        with tarfile.open(self.payload / 'ggml-src.tar.xz') as tar:
            tar.extractall(self.work / 'src', filter='data') if hasattr(tarfile, 'data_filter') else \
                tar.extractall(self.work / 'src')

    def build(self, arch):
        if os.environ.get('LLMOPS_GPU_SKIP_BUILD'):
            self.say('LLMOPS_GPU_SKIP_BUILD is set: no CUDA backend, Ollama runs on the CPU')
            return {'skipped': True}
        src, build = self.work / 'src', self.work / 'build'
        jobs = str(os.cpu_count() or 8)
        configure = ['cmake', '-S', str(src), '-B', str(build), '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release',
                     '-DCMAKE_CUDA_ARCHITECTURES=%s' % arch]
        log = self.out / 'build.log'
        with open(log, 'w') as handle:
            start = time.time()
            subprocess.run(configure, stdout=handle, stderr=subprocess.STDOUT, check=True, timeout=300)
            subprocess.run(['cmake', '--build', str(build), '--target', 'ggml-cuda', 'ggml-base', '-j', jobs],
                           stdout=handle, stderr=subprocess.STDOUT, check=True, timeout=480)
        cuda = next(build.rglob('libggml-cuda.so'))
        base = next(build.rglob('libggml-base.so'))
        lib = self.work / 'root' / 'lib' / 'ollama'
        (lib / 'cuda_v12').mkdir(parents=True)
        shutil.copy2(base, lib / 'libggml-base.so')
        shutil.copy2(cuda, lib / 'cuda_v12' / 'libggml-cuda.so')
        # the build log is large; the last lines say enough
        tail = log.read_text(errors='replace').splitlines()[-5:]
        log.write_text('\n'.join(tail) + '\n')
        return {'seconds': round(time.time() - start, 1), 'cuda_architectures': arch,
                'libggml_cuda_bytes': (lib / 'cuda_v12' / 'libggml-cuda.so').stat().st_size,
                'libggml_base_bytes': (lib / 'libggml-base.so').stat().st_size}

    def python_site(self):
        """ansible-core (and gguf) importable: the carried wheels into work/site unless already there."""
        site = self.work / 'site'
        wanted = self.meta['ansible_core']
        try:
            import ansible.release
            if ansible.release.__version__ == wanted:
                import gguf  # noqa: F401
                return None
        except ImportError:
            pass
        wheels = sorted(str(p) for p in (self.payload / 'wheels').glob('*.whl'))
        try:
            import numpy  # noqa: F401
            wheels = [w for w in wheels if not os.path.basename(w).startswith('numpy-')]
        except ImportError:
            pass
        run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
             '--disable-pip-version-check', '--target', str(site)] + wheels)
        return site

    def generate_medium(self, site):
        """The medium model, written with the gguf package as the simulator writes its tiny ones."""
        target = self.work / 'models' / MEDIUM_NAME
        target.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if site:
            env['PYTHONPATH'] = os.pathsep.join([str(site), env.get('PYTHONPATH', '')])
        spec = dict(MEDIUM)
        if os.environ.get('LLMOPS_GPU_SKIP_BUILD'):
            spec.update(vocab=4096, n_embd=256, n_layer=4, n_head=4, n_head_kv=2, n_ff=704)  # a CPU rehearsal
        code = ('import sys, json; sys.path.insert(0, %r); import sim_models as m; m.CONTEXT_LENGTH = %d; '
                'm.write_gguf(__import__("pathlib").Path(%r), %r, json.loads(%r))'
                % (str(self.payload / 'lib'), MEDIUM_CONTEXT, str(target / 'model.gguf'), MEDIUM_NAME,
                   json.dumps(spec)))
        start = time.time()
        run([sys.executable, '-c', code], env=env, timeout=600)
        (target / 'Modelfile').write_text('FROM ./model.gguf\nTEMPLATE """{{ .Prompt }}"""\n'
                                          'PARAMETER stop "</s>"\nPARAMETER temperature 0.8\n')
        return {'bytes': (target / 'model.gguf').stat().st_size, 'seconds': round(time.time() - start, 1)}

    # ------------------------------------------------------------ the server

    def start_server(self, env_extra, label):
        self.stop_server()
        env = dict(os.environ)
        for key in list(env):
            if key.startswith('OLLAMA_'):
                del env[key]
        home = self.work / 'home'
        home.mkdir(exist_ok=True)
        env.update({'OLLAMA_HOST': HOST, 'OLLAMA_MODELS': str(self.work / 'store'), 'HOME': str(home),
                    'OLLAMA_KEEP_ALIVE': '10m', 'OLLAMA_DEBUG': '1'})
        cuda_lib = '/usr/local/cuda/lib64'
        if os.path.isdir(cuda_lib):
            env['LD_LIBRARY_PATH'] = os.pathsep.join(filter(None, [cuda_lib, env.get('LD_LIBRARY_PATH')]))
        env.update(env_extra)
        self.server_log = self.work / ('serve-%s.log' % re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-'))
        handle = open(self.server_log, 'wb')
        self.server = subprocess.Popen([str(self.work / 'root' / 'bin' / 'ollama'), 'serve'], env=env,
                                       stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError('ollama serve exited with %s: %s' % (self.server.returncode, self.log_tail()))
            try:
                return api('GET', '/api/version', timeout=2)['version']
            except (OSError, ValueError):
                time.sleep(0.2)
        raise RuntimeError('ollama serve did not answer within 60 s: %s' % self.log_tail())

    def stop_server(self):
        if self.server is None:
            return
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=10)
        self.server = None
        # the runner's CUDA context is gone once its process is
        deadline = time.time() + 20
        while time.time() < deadline and gpu_processes():
            time.sleep(0.2)

    def log_tail(self, lines=15):
        try:
            return ' | '.join(self.server_log.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return '(no log)'

    def log_text(self):
        return self.server_log.read_text(errors='replace')

    def inference_compute(self):
        text = self.log_text()
        found = re.findall(r'msg="inference compute"([^\n]*)', text)
        return found[-1].strip() if found else None

    def create_models(self):
        ollama = str(self.work / 'root' / 'bin' / 'ollama')
        env = dict(os.environ, OLLAMA_HOST=HOST)
        created = {}
        sources = {'tiny-a': self.payload / 'models' / 'tiny-a', MEDIUM_NAME: self.work / 'models' / MEDIUM_NAME}
        for name, directory in sources.items():
            run([ollama, 'create', name, '-f', str(directory / 'Modelfile')], cwd=str(directory), env=env,
                timeout=300)
            created[name] = (directory / 'model.gguf').stat().st_size
        # copies that only change where the layers go
        for name, base, layers in (('tiny-a-cpu', 'tiny-a', 0), (MEDIUM_NAME + '-cpu', MEDIUM_NAME, 0),
                                   (MEDIUM_NAME + '-partial', MEDIUM_NAME, PARTIAL_LAYERS)):
            directory = self.work / 'modelfiles' / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / 'Modelfile').write_text('FROM %s\nPARAMETER num_gpu %d\n' % (base, layers))
            run([ollama, 'create', name, '-f', str(directory / 'Modelfile')], cwd=str(directory), env=env,
                timeout=300)
            created[name] = created[base]
        return created

    # ------------------------------------------------------------ the collection's modules

    def modules(self, site):
        playbook = self.work / 'gpu-lane.yml'
        results = self.work / 'modules.json'
        checks = [
            ('generate_gpu', MEDIUM_NAME, 128),
            ('generate_partial', MEDIUM_NAME + '-partial', 32),
            ('generate_cpu', MEDIUM_NAME + '-cpu', 16),
            ('generate_cpu_tiny', 'tiny-a-cpu', 16),
        ]
        tasks = [
            {'name': 'gpu_host_info on the real nvidia-smi', 'llmops.ollama.gpu_host_info': {},
             'register': 'host_facts', 'ignore_errors': True},
        ]
        for key, model, tokens in checks:
            tasks.append({'name': 'ollama_generate_check %s' % model, 'register': key, 'ignore_errors': True,
                          'llmops.ollama.ollama_generate_check': {'url': URL, 'model': model, 'allow_cpu': False,
                                                                  'num_predict': tokens, 'timeout': 600}})
        # last, so it lists the loaded models with their residency
        tasks.append({'name': 'ollama_info by URL', 'llmops.ollama.ollama_info': {'urls': [URL]}, 'register': 'info',
                      'ignore_errors': True})
        names = ['host_facts', 'info'] + [c[0] for c in checks]
        tasks.append({'name': 'Write the results', 'ansible.builtin.copy': {
            'dest': str(results), 'mode': '0644',
            'content': '{{ {%s} | to_nice_json }}' % ', '.join("'%s': %s" % (n, n) for n in names)}})
        playbook.write_text(json.dumps([{'name': 'GPU lane', 'hosts': 'localhost', 'connection': 'local',
                                         'gather_facts': False, 'tasks': tasks}], indent=1))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.payload), ANSIBLE_NOCOLOR='1', PYTHONUTF8='1',
                   ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
                   ANSIBLE_HOME=str(self.work / 'ansible-home'), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        if site:
            env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(site), env.get('PYTHONPATH')]))
        proc = subprocess.run([sys.executable, '-m', 'ansible', 'playbook', '-i', 'localhost,', str(playbook)],
                              env=env, capture_output=True, text=True, timeout=900)
        (self.out / 'ansible.txt').write_text(proc.stdout[-20000:] + proc.stderr[-5000:])
        if not results.exists():
            raise RuntimeError('ansible-playbook wrote no results (rc %d): %s' % (proc.returncode,
                                                                                (proc.stdout + proc.stderr)[-2000:]))
        raw = json.loads(results.read_text())
        summary = {}
        host = raw['host_facts'].get('gpu') or {}
        summary['gpu_host_info'] = {'ok': not raw['host_facts'].get('failed'), 'msg': raw['host_facts'].get('msg'),
                                     'gpu': host}
        endpoint = (raw['info'].get('endpoints') or [{}])[0]
        summary['ollama_info'] = {'ok': not raw['info'].get('failed') and bool(endpoint.get('reachable')),
                                  'msg': raw['info'].get('msg'), 'version': endpoint.get('version'),
                                  'models': sorted(m.get('name') for m in endpoint.get('models') or []),
                                  'loaded': [{k: m.get(k) for k in ('name', 'size', 'size_vram', 'processor')}
                                             for m in endpoint.get('loaded') or []]}
        for key, model, _ in checks:
            r = raw[key]
            summary[key] = {'model': model, 'failed': bool(r.get('failed')), 'msg': r.get('msg'),
                            'tokens_per_second': r.get('tokens_per_second'), 'eval_count': r.get('eval_count'),
                            'load_seconds': r.get('load_seconds'), 'residency': r.get('residency')}
        self.results['modules'] = summary
        for key, model, _ in checks:
            s = summary[key]
            res = s['residency'] or {}
            self.say('ollama_generate_check %-22s %s  %s tokens/s, size_vram %s of %s%s' % (
                model, 'FAILED' if s['failed'] else 'passed', s['tokens_per_second'], res.get('size_vram'),
                res.get('size'), ('  msg: ' + s['msg'].splitlines()[-1][:200]) if s['failed'] and s['msg'] else ''))
        self.say('gpu_host_info: %s' % json.dumps({k: host.get(k) for k in (
            'gpu_count', 'driver_version', 'cuda_version')} if host else summary['gpu_host_info']['msg']))
        self.say('ollama_info: %s; loaded: %s' % (
            ', '.join(summary['ollama_info']['models'] or [str(summary['ollama_info']['msg'])]),
            ', '.join('%s %s' % (m['name'], m['processor']) for m in summary['ollama_info']['loaded'])))
        return summary

    # ------------------------------------------------------------ calibration

    def calibrate(self):
        sys.path.insert(0, str(self.payload))
        from ansible_collections.llmops.ollama.plugins.module_utils import vram
        archs = {}
        for name, path in (('tiny-a', self.payload / 'models' / 'tiny-a' / 'model.gguf'),
                           (MEDIUM_NAME, self.work / 'models' / MEDIUM_NAME / 'model.gguf')):
            archs[name] = vram.parse_gguf(vram.file_fetch(str(path)))
        archs['tiny-a']['num_ctx'] = 2048  # its Modelfile's PARAMETER num_ctx
        rows = []
        free = (self.results['gpu'].get('free_bytes') or {}).get('free')
        deadline = float(os.environ.get('LLMOPS_GPU_DEADLINE') or 540)
        for label, model, env in calibration_cases():
            if time.time() - self.started > deadline:
                rows.append({'label': label, 'model': model, 'env': env, 'error': 'skipped: past %d s' % deadline})
                continue
            env = dict(env)
            expect_error = bool(env.pop('expect_error', None))
            if env.get('OLLAMA_GPU_OVERHEAD', '').startswith('LEAVE:'):
                env['OLLAMA_GPU_OVERHEAD'] = str(max((free or 0) - int(env['OLLAMA_GPU_OVERHEAD'][6:]), 0))
            row = {'label': label, 'model': model, 'env': env, 'expect_error': expect_error}
            try:
                self.start_server(env, label)
                answer = api('POST', '/api/generate', {'model': model, 'prompt': 'Why is the sky blue?',
                                                       'stream': False,
                                                       'options': {'num_predict': 32, 'seed': 42, 'temperature': 0}},
                             timeout=600)
                ps = [m for m in api('GET', '/api/ps')['models'] if m['name'].split(':')[0] == model]
                row['ps'] = {k: ps[0].get(k) for k in ('size', 'size_vram', 'context_length')} if ps else None
                row['tokens_per_second'] = round(answer['eval_count'] / (answer['eval_duration'] / 1e9), 1) \
                    if answer.get('eval_duration') else None
                row['measured'] = measured(self.log_text())
                row['measured']['process_mib'] = sum(p['used_mib'] for p in gpu_processes())
                settings, warnings = vram.server_settings({}, env)
                keys = ('num_ctx', 'parallel', 'context_total', 'kv_cache_type', 'flash_attention', 'weights_bytes',
                        'kv_bytes', 'graph_bytes', 'overhead_bytes', 'total_bytes', 'vram_bytes', 'layers',
                        'layers_on_gpu', 'fits', 'notes')
                # Ollama's own estimate (what /api/ps reports) and the plan's (with the runner's measured memory)
                mirror = vram.estimate(archs[model], settings, 1, free, calibrated=False)
                est = vram.estimate(archs[model], settings, 1, free)
                row['ollama_estimate'] = {k: mirror[k] for k in keys}
                row['estimate'] = {k: est[k] for k in keys}
                row['offload_log'] = offload_line(self.log_text())
                if row['ps']:
                    row['mirror_minus_ps'] = [mirror['total_bytes'] - row['ps']['size'],
                                              mirror['vram_bytes'] - row['ps']['size_vram']]
                if row['measured']['process_mib']:
                    row['estimate_minus_process_mib'] = round(est['vram_bytes'] / MIB - row['measured']['process_mib'])
                self.say('%-31s ps %9s / %9s  ollama-est %9s / %9s  plan-est %9s / %9s  process %6s MiB  '
                         'kv %s  compute %s  %s tok/s'
                         % (label, mib(row['ps'] and row['ps']['size']), mib(row['ps'] and row['ps']['size_vram']),
                            mib(mirror['total_bytes']), mib(mirror['vram_bytes']), mib(est['total_bytes']),
                            mib(est['vram_bytes']), row['measured']['process_mib'],
                            row['measured'].get('kv_mib'), row['measured'].get('compute_mib'),
                            row['tokens_per_second']))
                if expect_error:
                    row['error'] = 'expected the runner to fail, but it answered'
            except Exception as exc:  # one case failing leaves the others
                if not row.get('error'):
                    row['error'] = '%s: %s' % (type(exc).__name__, exc)
                    row['crash'] = crash_lines(self.log_text())
                    if expect_error:
                        row['known'] = row.pop('error')
                self.say('%-31s %s %s | %s' % (label, 'known failure:' if row.get('known') else 'ERROR',
                                               row.get('known') or row.get('error'), ' | '.join(row.get('crash') or [])))
            rows.append(row)
            self.results['calibration'] = rows
            self.save()
        self.stop_server()
        self.results['architectures'] = archs
        self.results['calibration'] = rows
        return rows

    # ------------------------------------------------------------ the whole cycle

    def main(self):
        try:
            facts = self.step('nvidia-smi', self.gpu_facts)
            caps = sorted(set(g['compute_cap'].replace('.', '') for g in facts['gpus']))
            self.step('unpack', self.unpack)
            side = {}

            def prepare():
                # wheels, then the generated model, beside the build (which needs neither)
                try:
                    site = self.python_site()
                    side['site'] = site
                    side['medium'] = self.generate_medium(site)
                except Exception as exc:  # reported after the build
                    side['error'] = '%s: %s' % (type(exc).__name__, exc)

            helper = threading.Thread(target=prepare)
            helper.start()
            self.results['build'] = self.step('build ggml-cuda for sm_%s' % ';'.join(caps), self.build,
                                              ';'.join(caps))
            helper.join()
            if side.get('error'):
                raise RuntimeError('preparing the wheels and %s failed: %s' % (MEDIUM_NAME, side['error']))
            site = side['site']
            self.results['medium_model'] = side['medium']
            self.say('build: %s; %s: %s bytes in %s s' % (json.dumps(self.results['build']), MEDIUM_NAME,
                                                          side['medium']['bytes'], side['medium']['seconds']))
            version = self.step('start ollama', self.start_server, WORKLOAD_ENV, 'modules')
            self.results['ollama'] = {'version': version, 'inference_compute': self.inference_compute()}
            self.say('ollama %s: %s' % (version, self.results['ollama']['inference_compute']))
            self.results['models'] = self.step('create models', self.create_models)
            self.step('modules', self.modules, site)
            self.step('calibration', self.calibrate)
            self.results['ok'] = self.verdict()
        except Exception as exc:  # a failed step is already recorded; anything else is recorded here
            self.results['ok'] = False
            if not any(not step['ok'] for step in self.results['steps'].values()):
                self.results['error'] = '%s: %s' % (type(exc).__name__, exc)
                self.say('FAILED: %s' % self.results['error'])
        finally:
            self.stop_server()
            log = self.work / 'serve-modules.log'
            if log.exists():
                lines = log.read_text(errors='replace').splitlines()
                (self.out / 'serve-modules.log').write_text('\n'.join(lines[:60] + ['...'] + lines[-300:]) + '\n')
            self.save()
        return 0 if self.results['ok'] else 1

    def verdict(self):
        """The checks the lane stands for; each failure is printed."""
        m = self.results.get('modules') or {}
        problems = []
        if not (m.get('gpu_host_info') or {}).get('ok'):
            problems.append('gpu_host_info failed')
        if not (m.get('ollama_info') or {}).get('ok'):
            problems.append('ollama_info failed')
        for key in ('generate_gpu',):
            if (m.get(key) or {}).get('failed', True):
                problems.append('%s did not pass' % key)
        for key in ('generate_cpu', 'generate_partial', 'generate_cpu_tiny'):
            if not (m.get(key) or {}).get('failed'):
                problems.append('%s passed but must fail' % key)
        for row in self.results.get('calibration') or []:
            if row.get('error'):
                problems.append('calibration %s: %s' % (row['label'], row['error']))
        self.results['problems'] = problems
        self.say('verdict: %s' % ('all checks passed' if not problems else '; '.join(problems)))
        return not problems


# ---------------------------------------------------------------- helpers

def run(cmd, check=True, timeout=120, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('%s exited %d: %s' % (' '.join(cmd[:3]), proc.returncode,
                                                 (proc.stderr or proc.stdout).strip()[-1500:]))
    return proc.stdout


def api(method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(URL + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError('%s %s answered %d: %s' % (method, path, exc.code, exc.read()[:500]))


def gpu_processes():
    if not shutil.which('nvidia-smi'):
        return []
    try:
        out = run(['nvidia-smi', '--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'],
                  check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    procs = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 2 and parts[1].isdigit():
            procs.append({'pid': int(parts[0]), 'used_mib': int(parts[1])})
    return procs


def cuda_free_bytes():
    """Free and total bytes as CUDA reports them with one context open (what Ollama's GPU discovery reads)."""
    try:
        cuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return None
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), 0):
        return None
    if cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev):
        return None
    try:
        if cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)):
            return None
        return {'free': free.value, 'total': total.value}
    finally:
        cuda.cuCtxDestroy_v2(ctx)


_BUFFERS = {
    'kv_mib': r'CUDA\d+ KV buffer size\s*=\s*([0-9.]+) MiB',
    'compute_mib': r'CUDA\d+ compute buffer size\s*=\s*([0-9.]+) MiB',
    'model_mib': r'CUDA\d+ model buffer size\s*=\s*([0-9.]+) MiB',
    'cpu_kv_mib': r'CPU KV buffer size\s*=\s*([0-9.]+) MiB',
}


def measured(log):
    """What llama.cpp says it allocated on the GPU (sums over its log lines)."""
    out = {}
    for key, pattern in _BUFFERS.items():
        values = [float(v) for v in re.findall(pattern, log)]
        out[key] = round(sum(values), 2) if values else None
    ctx = re.findall(r'n_ctx\s*=\s*(\d+)', log)
    out['n_ctx'] = int(ctx[-1]) if ctx else None
    return out


def crash_lines(log, limit=8):
    """The lines of a server log that say why a runner stopped."""
    pattern = re.compile(r'GGML_ASSERT|GGML_ABORT|fatal error|CUDA error|panic|SIGABRT|signal arrived|'
                         r'exit status|unexpectedly|error loading|out of memory', re.I)
    lines = [line.strip()[:300] for line in log.splitlines() if pattern.search(line)]
    return lines[:limit]


def offload_line(log):
    found = re.findall(r'msg=offload([^\n]*)', log)
    return found[-1].strip()[:1200] if found else None


def human(value):
    return '%.1f GiB' % (value / float(GIB)) if value else '?'


def mib(value):
    return '%d MiB' % round(value / float(MIB)) if value is not None else '-'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--payload', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    return Runner(args.payload, args.out).main()


if __name__ == '__main__':
    sys.exit(main())
