"""The plan's GPU memory estimate on the simulated cluster: the architecture comes from each model blob's GGUF
header, read from the simulator's registry by range requests (the header only, not the weights); a model the
registry does not have is estimated from declared fields, or by its file size with the plan saying so."""

import os
from pathlib import Path

import pytest


def plan_of(run):
    return run.task_results("decide every choice before any change (the plan)")[0]["ansible_facts"]["gpu_preflight_plan"]


def model_facts(run):
    return run.task_results("Read each model's size and digest from its registry")[0]


def access_log():
    """The simulator's registry proxy access log (the cluster fixture sets LLMOPS_SIM_STATE); None elsewhere."""
    state = os.environ.get("LLMOPS_SIM_STATE")
    logs = sorted(Path(state).rglob("registry-access.log")) if state else []
    return logs[0].read_text().splitlines() if logs else None


@pytest.mark.profile("k3s")
def test_the_plan_reads_each_gguf_header_by_range_requests(playbook, cluster, namespace):
    big, tiny = cluster.model("tiny-big"), cluster.model("tiny-a")
    before = len(access_log() or [])
    run = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_models": [{"name": big}, {"name": tiny}]})
    assert run.rc == 0, run
    details = {d["name"]: d for d in model_facts(run)["details"]}
    header = details[big]
    assert header["architecture_source"] == "gguf header", header
    # tiny-big is 58 MB; its header (vocabulary and tensor table) is a few hundred KB, read in ranges
    assert header["range_statuses"] == [206], header
    assert header["fetched_bytes"] < header["blob_bytes"] / 10 and header["header_bytes"] <= header["fetched_bytes"]
    models = {m["name"].split("/")[-1]: m for m in plan_of(run)["models"]}
    estimate = models["tiny-big:latest"]["vram"]
    # sim/sim/models.py: 6 layers, 8 KV heads of 64, 2048 trained; the model's num_ctx 2048 wins over
    # OLLAMA_CONTEXT_LENGTH, times OLLAMA_NUM_PARALLEL 2 (the ollama_workload defaults)
    assert estimate["source"] == "gguf header" and estimate["fits"] is True
    assert (estimate["num_ctx"], estimate["parallel"], estimate["kv_cache_type"]) == (2048, 2, "f16")
    assert estimate["kv_bytes"] == 6 * 2 * 2048 * (64 + 64) * 8 * 2
    assert models["tiny-a:latest"]["vram"]["kv_bytes"] == 2 * 2 * 2048 * (16 + 16) * 2 * 2
    log = access_log()
    if log is not None:  # the simulator's registry proxy logs every request
        blobs = {}
        for line in log[before:]:
            method, path, status, sent = line.split()
            if path.startswith("/_sim/blobs/library/tiny-big/"):
                blobs.setdefault(path.rsplit("/", 1)[1], []).append((status, int(sent)))
        # the model blob in ranges only, and the few bytes of its params blob (num_ctx)
        model = [requests for requests in blobs.values() if requests[0][0] == "206"]
        assert len(model) == 1 and all(status == "206" for status, _ in model[0]), blobs
        assert sum(sent for _, sent in model[0]) == header["fetched_bytes"]
        assert all(sent < 1024 for requests in blobs.values() if requests is not model[0] for _, sent in requests)


@pytest.mark.profile("k3s")
def test_an_unknown_header_falls_back_to_declared_fields_or_the_file_size(playbook, cluster, namespace):
    registry = cluster.model("tiny-a").split("/", 1)[0]
    declared = {"name": f"{registry}/library/llama-big:70b", "size": "40GB",
                "architecture": {"layers": 80, "kv_heads": 8, "head_size": 128, "context_length": 131072}}
    sized = {"name": f"{registry}/library/unlisted:1b", "size": "1GB"}
    run = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_models": [declared, sized],
                                     "ollama_workload_env": {"OLLAMA_CONTEXT_LENGTH": "32768"}})
    assert run.rc != 0
    # the 24 GiB cards of the k3s profile hold neither 40 GB of weights nor 2 x 32768 tokens of KV cache
    assert "- ollama_models: model " in run.failure and "llama-big:70b needs" in run.failure, run.failure
    assert "KV cache 20.0 GiB for 2 x 32768 tokens at f16" in run.failure, run.failure
    assert "ollama_allow_cpu_offload: true" in run.failure and "nothing was changed" in run.failure
    accepted = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_models": [declared, sized],
                                          "ollama_allow_cpu_offload": True})
    assert accepted.rc == 0, accepted
    warnings = " ".join(plan_of(accepted)["warnings"])
    assert "allowed by ollama_allow_cpu_offload" in warnings
    assert "unlisted:1b: its registry manifest was not read" in warnings, warnings
    assert "compares its file size only" in warnings
