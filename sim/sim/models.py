"""Tiny llama-architecture GGUF models with random weights, for the simulated cluster's registry.

Each model directory holds model.gguf, a Modelfile that `ollama create` accepts, and meta.json
(the spec, the GGUF's sha256 and the exact Ollama layers: template, params, license).
The bytes depend only on the spec and seed: weights come from PCG64's raw output, whose stream
numpy guarantees across versions (its distribution methods are not guaranteed).
"""

import hashlib
import json
import sys
from pathlib import Path

FORMAT = 1  # bump when the bytes generate() writes change

TEMPLATE = "{{ .Prompt }}"
LICENSE = "Random weights generated for the llmops.ollama simulator. No rights reserved."
# Modelfile PARAMETER lines, and the params layer `ollama create` makes from them (api.FormatParams types).
PARAMETERS = [("num_ctx", "2048"), ("stop", "</s>"), ("temperature", "0.8")]
PARAMS = {"num_ctx": 2048, "stop": ["</s>"], "temperature": 0.8}

MODELS = {
    # name: seed, vocab, n_embd, n_layer, n_head, n_head_kv, n_ff
    "tiny-a": dict(seed=1, vocab=512, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=176),
    "tiny-b": dict(seed=2, vocab=512, n_embd=64, n_layer=3, n_head=4, n_head_kv=2, n_ff=176),
    "tiny-c": dict(seed=3, vocab=640, n_embd=96, n_layer=2, n_head=4, n_head_kv=4, n_ff=256),
    # >= 50 MB, for progress and throughput tests
    "tiny-big": dict(seed=4, vocab=8192, n_embd=512, n_layer=6, n_head=8, n_head_kv=8, n_ff=1536),
}
CONTEXT_LENGTH = 2048


def _vocab(size: int) -> tuple:
    """SentencePiece-style vocab: <unk> <s> </s>, the 256 byte tokens, then letter n-grams."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, byte
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    grams = ["\u2581"] + list(letters) + [a + b for a in letters for b in letters]
    pieces = [p for g in grams for p in ("\u2581" + g, g)]
    pieces = list(dict.fromkeys(p for p in pieces if p != "\u2581\u2581"))
    if size - len(tokens) > len(pieces):
        pieces += [f"\u2581w{i}" for i in range(size - len(tokens) - len(pieces))]
    tokens += pieces[: size - len(tokens)]
    types += [1] * (size - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(size - 259)]
    return tokens, scores, types


def _weights(rng, shape: tuple, scale: float, dtype):
    import numpy as np

    n = int(np.prod(shape))
    uniform = (rng.random_raw(n) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return ((uniform * 2.0 - 1.0) * scale).astype(dtype).reshape(shape)


def write_gguf(path: Path, name: str, spec: dict) -> None:
    import gguf
    import numpy as np

    rng = np.random.PCG64(spec["seed"])
    vocab, n_embd, n_layer = spec["vocab"], spec["n_embd"], spec["n_layer"]
    n_head, n_head_kv, n_ff = spec["n_head"], spec["n_head_kv"], spec["n_ff"]
    head_dim = n_embd // n_head
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)  # 0 (F32) reads as "unknown" in Ollama's file_type
    w.add_vocab_size(vocab)
    w.add_context_length(CONTEXT_LENGTH)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    tokens, scores, types = _vocab(vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    f16, f32 = np.float16, np.float32
    s = 1.0 / n_embd ** 0.5
    w.add_tensor("token_embd.weight", _weights(rng, (vocab, n_embd), 1.0, f16))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, f32))
        w.add_tensor(f"blk.{i}.attn_q.weight", _weights(rng, (n_head * head_dim, n_embd), s, f16))
        w.add_tensor(f"blk.{i}.attn_k.weight", _weights(rng, (n_head_kv * head_dim, n_embd), s, f16))
        w.add_tensor(f"blk.{i}.attn_v.weight", _weights(rng, (n_head_kv * head_dim, n_embd), s, f16))
        w.add_tensor(f"blk.{i}.attn_output.weight", _weights(rng, (n_embd, n_head * head_dim), s, f16))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, f32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, (n_ff, n_embd), s, f16))
        w.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, (n_ff, n_embd), s, f16))
        w.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, (n_embd, n_ff), 1.0 / n_ff ** 0.5, f16))
    w.add_tensor("output_norm.weight", np.ones(n_embd, f32))
    output = _weights(rng, (vocab, n_embd), 3.0 * s, f16)
    output[:3] = 0  # control tokens get logit 0, so random text rarely ends at once with </s>
    w.add_tensor("output.weight", output)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def parameter_count(spec: dict) -> int:
    e, f, v, hd = spec["n_embd"], spec["n_ff"], spec["vocab"], spec["n_embd"] // spec["n_head"]
    per_layer = 2 * e + 2 * e * spec["n_head"] * hd + 2 * e * spec["n_head_kv"] * hd + 3 * e * f
    return 2 * v * e + e + spec["n_layer"] * per_layer


def modelfile() -> str:
    lines = ["FROM ./model.gguf", f'TEMPLATE """{TEMPLATE}"""']
    lines += [f'PARAMETER {k} "{v}"' if k == "stop" else f"PARAMETER {k} {v}" for k, v in PARAMETERS]
    lines.append(f'LICENSE """{LICENSE}"""')
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(model_dir: Path, spec: dict) -> bool:
    try:
        meta = json.loads((model_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("spec") == spec and (model_dir / "model.gguf").is_file() \
        and (model_dir / "Modelfile").is_file() and _sha256(model_dir / "model.gguf") == meta.get("sha256")


def generate(out_dir: Path, names=None) -> dict:
    """Write each model under out_dir/<name>/ unless it is already there with the recorded hash."""
    out = {}
    for name, params in MODELS.items():
        if names and name not in names:
            continue
        spec = dict(params, format=FORMAT)
        model_dir = Path(out_dir) / name
        out[name] = model_dir
        if _cached(model_dir, spec):
            continue
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / "model.gguf.tmp"
        write_gguf(tmp, name, params)
        tmp.rename(model_dir / "model.gguf")
        (model_dir / "Modelfile").write_text(modelfile())
        meta = {
            "name": name, "spec": spec, "sha256": _sha256(model_dir / "model.gguf"),
            "size": (model_dir / "model.gguf").stat().st_size,
            "parameter_count": parameter_count(params), "file_type": "F16",
            "template": TEMPLATE, "params": PARAMS, "license": LICENSE,
        }
        (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def main_generate(out_dir) -> dict:
    models = generate(Path(out_dir))
    for name, path in models.items():
        print(f"{name}\t{(path / 'model.gguf').stat().st_size}\t{path}")
    return models


if __name__ == "__main__":
    main_generate(sys.argv[1] if len(sys.argv) > 1 else ".")
