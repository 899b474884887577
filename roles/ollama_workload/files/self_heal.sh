#!/bin/sh
# llmops.ollama self-heal: the "models" sidecar of each Ollama pod (docs/design.md, "Self-heal").
#
# Pulls the declared models this replica's store lacks through the pod's own Ollama (OLLAMA_HOST, loopback) and
# writes the readiness marker once every one is there; the sidecar's readiness probe reads the marker. Once
# written the marker stays for the pod's life: a model declared later is pulled while the replica keeps serving.
# It only adds what is missing: a model that was in the store and went (a prune or delete by the model_pull
# role) is left alone, and digests, prune and progress stay with Ansible.
#
# The list (re-read every round; the kubelet updates the ConfigMap file): one model a line,
#   <name as `ollama list` prints it> <name to pull> <insecure 0|1> <pinned ID (12 hex digits) or -> [<name through
#   the model cache>]
# POSIX sh and the ollama CLI only: the Ollama image has no curl or python.
set -u

LIST=${LLMOPS_HEAL_LIST:-/etc/llmops-heal/models}
STATE=${LLMOPS_HEAL_STATE:-/run/llmops-heal}
PULL=${LLMOPS_HEAL_PULL:-1}
INTERVAL=${LLMOPS_HEAL_INTERVAL:-30}
PULL_TIMEOUT=${LLMOPS_HEAL_PULL_TIMEOUT:-7200}
BACKOFF_MAX=300
READY=$STATE/ready
SEEN=$STATE/seen
ESC=$(printf '\033')

log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) llmops-heal: $*"
}

# The same line again stays unsaid (a waiting sidecar would repeat it every round).
said=
note() {
    [ "$*" = "$said" ] || log "$@"
    said=$*
}

# The shell may run as PID 1, which ignores SIGTERM without a trap; every wait runs in the background so the
# trap fires at once instead of after a sleep or a pull.
child=
stop() {
    if [ -n "$child" ]; then
        kill "$child" 2>/dev/null
    fi
    log "stopping"
    exit 0
}
trap stop TERM INT

pause() {
    sleep "$1" &
    child=$!
    wait "$child"
    child=
}

# ollama list into $STATE/list; false while the server does not answer.
listed() {
    ollama list >"$STATE/list" 2>"$STATE/list.err"
}

# The ID of a model in the last list (names compare case-insensitively, as Ollama's do); empty if absent.
id_of() {
    awk -v n="$1" 'NR > 1 && tolower($1) == tolower(n) { print $2; exit }' "$STATE/list"
}

# The last line the pull printed, without its progress bars and terminal codes.
pull_said() {
    tr '\r' '\n' <"$STATE/pull.log" | sed "s/${ESC}\[[0-9;?]*[A-Za-z]//g" | grep -v '^[[:space:]]*$' | tail -n 1
}

# With the model cache (a 5th column): pull by the cache's name (plain HTTP), copy to the model's own name, remove
# the cache-named manifest (Ollama keeps the blobs the copy uses).
pull_via() {
    timeout "$PULL_TIMEOUT" ollama pull --insecure "$2" </dev/null >"$STATE/pull.log" 2>&1 &
    child=$!
    wait "$child"
    status=$?
    child=
    [ "$status" = 0 ] || return $status
    if ! ollama cp "$2" "$1" >>"$STATE/pull.log" 2>&1; then
        # The model_pull role pulls the same name at the same time and may have copied and removed it first.
        if listed && [ -n "$(id_of "$1")" ]; then
            return 0
        fi
        status=1
        return 1
    fi
    ollama rm "$2" >/dev/null 2>&1 || true
    return 0
}

pull() {
    if [ "$2" = 1 ]; then
        timeout "$PULL_TIMEOUT" ollama pull --insecure "$1" </dev/null >"$STATE/pull.log" 2>&1 &
    else
        timeout "$PULL_TIMEOUT" ollama pull "$1" </dev/null >"$STATE/pull.log" 2>&1 &
    fi
    child=$!
    wait "$child"
    status=$?
    child=
    return $status
}

# fetch NAME PULL_NAME INSECURE [VIA]: through the model cache when VIA is given.
fetch() {
    if [ -n "${4:-}" ]; then
        pull_via "$1" "$4"
    else
        pull "$2" "$3"
    fi
}

mkdir -p "$STATE"
touch "$SEEN"
log "waiting for Ollama at ${OLLAMA_HOST:-127.0.0.1:11434} (list $LIST, pulls $([ "$PULL" = 1 ] && echo on || echo 'off: shared store'))"
until listed; do
    pause 1
done
log "Ollama answers"

backoff=5
while :; do
    if ! listed; then
        note "Ollama does not answer: $(tail -n 1 "$STATE/list.err")"
        pause 2
        continue
    fi
    if [ ! -r "$LIST" ]; then
        note "no model list at $LIST"
        pause 5
        continue
    fi
    total=0
    missing=0
    failed=0
    pulled=0
    while read -r name pull_name insecure pinned via <&3; do
        case "$name" in
            '' | '#'*) continue ;;
        esac
        total=$((total + 1))
        id=$(id_of "$name")
        if [ -n "$id" ] && { [ "$pinned" = - ] || [ "$id" = "$pinned" ]; }; then
            grep -qxF "$name" "$SEEN" || echo "$name" >>"$SEEN"
            continue
        fi
        if grep -qxF "$name" "$SEEN"; then
            # In this store earlier in the pod's life: removed or replaced on purpose (model_pull). Ansible's.
            continue
        fi
        missing=$((missing + 1))
        [ "$PULL" = 1 ] || continue
        if [ -f "$READY" ]; then
            log "pulling $pull_name (declared after this replica became ready; it keeps serving)"
        else
            log "pulling $pull_name"
        fi
        before=$id
        started=$(date +%s)
        if fetch "$name" "$pull_name" "$insecure" "$via"; then
            listed || true
            id=$(id_of "$name")
            if [ -z "$id" ]; then
                failed=$((failed + 1))
                log "Ollama said success for $pull_name but does not list $name"
            elif [ "$pinned" != - ] && [ "$id" != "$pinned" ]; then
                failed=$((failed + 1))
                # As the model_pull role does: a copy pulled into a store that had none goes again.
                removed=
                if [ -z "$before" ] && ollama rm "$name" >/dev/null 2>&1; then
                    removed="; the pulled copy was removed again"
                fi
                log "$name is pinned to $pinned... but the registry serves $id...$removed: not ready. Fix: update the digest in ollama_models, or pin the tag that serves it"
            else
                pulled=$((pulled + 1))
                log "pulled $name ($id) in $(($(date +%s) - started)) s"
            fi
        else
            failed=$((failed + 1))
            if [ -n "$via" ]; then
                log "pulling $pull_name through the model cache as $via failed (exit $status): $(pull_said). Fix: the model cache must be Ready; its warm container's log names the registry it could not reach"
            else
                log "pulling $pull_name failed (exit $status): $(pull_said)"
            fi
        fi
    done 3<"$LIST"

    if [ "$missing" -eq 0 ]; then
        if [ ! -f "$READY" ]; then
            echo "$total" >"$READY"
            log "ready: all $total declared models are in the store"
        fi
        backoff=5
        pause "$INTERVAL"
    elif [ "$failed" -eq 0 ] && [ "$pulled" -gt 0 ]; then
        # Pulled this round: check again at once.
        continue
    elif [ "$PULL" != 1 ]; then
        [ -f "$READY" ] || note "waiting for $missing of $total models in the shared store (the model_pull role pulls them)"
        pause 5
    else
        log "$missing of $total models missing; next try in ${backoff}s"
        pause "$backoff"
        backoff=$((backoff * 2))
        if [ "$backoff" -gt "$BACKOFF_MAX" ]; then
            backoff=$BACKOFF_MAX
        fi
    fi
done
