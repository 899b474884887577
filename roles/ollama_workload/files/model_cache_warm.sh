#!/bin/sh
# llmops.ollama model cache: the "warm" init container of the cache pod (docs/models.md, "The model cache").
#
# Fetches every declared model's manifest and blobs through its registry container (Distribution in proxy mode, on
# 127.0.0.1) once, one whole GET after the other, before the front starts and the pod gets Ready. Distribution's
# proxy serves a blob it does not hold yet whole whatever the Range, and sends concurrent requests for it to the
# upstream, so the replicas' ranged, parallel downloads must only meet blobs the cache holds already.
# A model already in the cache costs a read of its blobs from the claim, nothing from the upstream.
#
# The list, one model a line: <registry port> <repository> <tag> <upstream URL>
# On failure the last line says what and the fix, and the container exits 1: the kubelet keeps that line as the
# termination message (terminationMessagePolicy: FallbackToLogsOnError) and retries with back-off.
# POSIX sh and wget only (busybox's in the registry image).
set -u

LIST=${LLMOPS_CACHE_LIST:-/etc/llmops-cache/models}
WAIT=${LLMOPS_CACHE_REGISTRY_WAIT:-120}
READ_TIMEOUT=${LLMOPS_CACHE_READ_TIMEOUT:-60}
NAME=${LLMOPS_CACHE_NAME:-model-cache}
TMP=${TMPDIR:-/tmp}
ACCEPT='application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'

log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) llmops-cache: $*"
}

fail() {
    log "$*"
    exit 1
}

# The last line wget wrote (its error), without progress output.
said() {
    tr '\r' '\n' <"$TMP/wget.err" | grep -v '^[[:space:]]*$' | tail -n 1
}

# -T: seconds without data before a request is given up (not a bound on a large blob's whole download).
get() {
    wget -T "$READ_TIMEOUT" -O "$1" "$2" 2>"$TMP/wget.err"
}

fix_reach() {
    echo "Fix: let the cache reach $1: the egress policy admits its port (ollama_workload_egress_cidrs, ollama_workload_extra_egress), its name resolves in the cluster, a plain-HTTP registry is listed in ollama_insecure_registries; the registry's own log says more (kubectl logs deploy/$NAME -c registry-$2)"
}

[ -r "$LIST" ] || fail "no model list at $LIST. Fix: run the playbook again (the ConfigMap $NAME-config carries it)"

# Each registry container answers on its own port first.
awk '!/^#/ && NF { print $1 }' "$LIST" | sort -u >"$TMP/ports"
while read -r port <&4; do
    n=0
    until wget -T 5 -O /dev/null "http://127.0.0.1:$port/v2/" 2>"$TMP/wget.err"; do
        n=$((n + 1))
        [ "$n" -lt "$WAIT" ] || fail "the registry on 127.0.0.1:$port did not answer within ${WAIT}s: $(said). Fix: see kubectl logs deploy/$NAME -c registry-$((port - 5100))"
        sleep 1
    done
done 4<"$TMP/ports"

models=0
blobs=0
started=$(date +%s)
while read -r port repository tag upstream <&3; do
    case "$port" in
        '' | '#'*) continue ;;
    esac
    index=$((port - 5100))
    manifest="$TMP/manifest.json"
    if ! wget -T "$READ_TIMEOUT" -O "$manifest" --header "Accept: $ACCEPT" "http://127.0.0.1:$port/v2/$repository/manifests/$tag" 2>"$TMP/wget.err"; then
        fail "cannot fetch $repository:$tag from $upstream through the cache: $(said). $(fix_reach "$upstream" "$index"); or check the model's name and tag at $upstream"
    fi
    grep -o 'sha256:[0-9a-f]\{64\}' "$manifest" | sort -u >"$TMP/digests"
    while read -r digest <&4; do
        begun=$(date +%s)
        if ! get /dev/null "http://127.0.0.1:$port/v2/$repository/blobs/$digest"; then
            fail "cannot fetch blob $digest of $repository:$tag from $upstream: $(said). $(fix_reach "$upstream" "$index"); a full disk shows as an error here too: raise ollama_model_cache_size"
        fi
        blobs=$((blobs + 1))
        log "$repository:$tag: $digest in the cache ($(($(date +%s) - begun)) s)"
    done 4<"$TMP/digests"
    models=$((models + 1))
done 3<"$LIST"
log "warm: $models models ($blobs blobs) in the cache in $(($(date +%s) - started)) s"
