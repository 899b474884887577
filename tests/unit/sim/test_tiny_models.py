"""The tiny-model generator: deterministic bytes, a GGUF Ollama's llama loader accepts, caching."""

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))
gguf = pytest.importorskip("gguf")

from sim import models, registry  # noqa: E402

SMALL = ["tiny-a", "tiny-b", "tiny-c"]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = models.MODELS["tiny-a"]
    models.write_gguf(tmp_path / "one.gguf", "tiny-a", spec)
    models.write_gguf(tmp_path / "two.gguf", "tiny-a", spec)
    models.write_gguf(tmp_path / "three.gguf", "tiny-a", dict(spec, seed=99))
    assert (tmp_path / "one.gguf").read_bytes() == (tmp_path / "two.gguf").read_bytes()
    assert sha256(tmp_path / "one.gguf") != sha256(tmp_path / "three.gguf")


def test_generate_twice_in_two_places_gives_identical_models(tmp_path):
    first = models.generate(tmp_path / "a", names=SMALL)
    second = models.generate(tmp_path / "b", names=SMALL)
    assert sorted(first) == SMALL
    digests = {sha256(first[name] / "model.gguf") for name in SMALL}
    assert len(digests) == len(SMALL)  # every model is different
    for name in SMALL:
        assert sha256(first[name] / "model.gguf") == sha256(second[name] / "model.gguf")
        assert (first[name] / "Modelfile").read_text() == (second[name] / "Modelfile").read_text()
        assert (first[name] / "meta.json").read_text() == (second[name] / "meta.json").read_text()


def test_known_digest_of_tiny_a(tmp_path):
    # Pinned with gguf 0.19.0 / numpy 2.4.6; a change here changes every digest in the sim registry.
    path = models.generate(tmp_path, names=["tiny-a"])["tiny-a"]
    assert sha256(path / "model.gguf") == "6ebc16bd256618bdfe4b6459757bc3f7a05d96202b6292d32dac17ebd0e9b838"


def test_gguf_has_what_the_llama_loader_needs(tmp_path):
    path = models.generate(tmp_path, names=["tiny-a"])["tiny-a"] / "model.gguf"
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    for key in ("llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.attention.layer_norm_rms_epsilon", "llama.rope.dimension_count", "general.file_type",
                "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        assert key in fields, key
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    spec = models.MODELS["tiny-a"]
    assert len(fields["tokenizer.ggml.tokens"].data) == spec["vocab"]
    tensors = {t.name: t for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight", "output.weight"}
    for i in range(spec["n_layer"]):
        expected |= {f"blk.{i}.{n}.weight" for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                     "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(tensors) == expected
    for name, tensor in tensors.items():
        want = gguf.GGMLQuantizationType.F32 if name.endswith("norm.weight") else gguf.GGMLQuantizationType.F16
        assert tensor.tensor_type == want, name
    assert sum(int(t.n_elements) for t in reader.tensors) == models.parameter_count(spec)


def test_modelfile_and_sizes(tmp_path):
    out = models.generate(tmp_path)
    assert set(out) == set(models.MODELS)
    for name, path in out.items():
        assert (path / "Modelfile").read_text().startswith("FROM ./model.gguf\n")
        size = (path / "model.gguf").stat().st_size
        assert size >= 50_000_000 if name == "tiny-big" else 100_000 < size < 1_000_000, (name, size)


def test_generate_skips_cached_and_repairs_changed_files(tmp_path):
    path = models.generate(tmp_path, names=["tiny-a"])["tiny-a"]
    gguf_file = path / "model.gguf"
    good = gguf_file.read_bytes()
    mtime = gguf_file.stat().st_mtime_ns
    models.generate(tmp_path, names=["tiny-a"])
    assert gguf_file.stat().st_mtime_ns == mtime  # cached: not rewritten
    gguf_file.write_bytes(good[:-1] + b"\x00")
    models.generate(tmp_path, names=["tiny-a"])
    assert gguf_file.read_bytes() == good  # hash mismatch: regenerated


def test_ollama_layers_match_what_ollama_create_writes(tmp_path):
    # Digests observed from `ollama create tiny-a -f Modelfile` with Ollama v0.11.4.
    config, blobs = registry.ollama_artifacts(models.generate(tmp_path, names=["tiny-a"])["tiny-a"])
    assert [media.rsplit(".", 1)[1] for media, *_ in blobs] == ["model", "template", "license", "params"]
    assert blobs[3][1] == b'{"num_ctx":2048,"stop":["\\u003c/s\\u003e"],"temperature":0.8}\n'
    assert [digest[7:19] for *_, digest, _ in blobs] == ["6ebc16bd2566", "b507b9c2f6ca", "7da83fbdef21", "26bf9a950757"]
    assert hashlib.sha256(config).hexdigest() == "62e8180622bd89792102c1d3cff61e0471f782db18c9e413ff6123361dc63115"


@pytest.mark.parametrize("n, text", [(158016, "158K"), (28842496, "28.84M"), (3_000_000, "3M"),
                                     (7_241_732_096, "7.2B"), (8_000_000_000, "8B"), (999, "999")])
def test_human_number_like_ollama(n, text):
    assert registry._human_number(n) == text
