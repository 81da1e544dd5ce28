#!/bin/sh
# Container entry point for jinaserve.
#
#   (no args) / serve ...      -> jinaserve serve ...   (settings from JINASERVE_* variables)
#   -x/--flag ...              -> jinaserve serve -x/--flag ...
#   models|pull|bundle|embed|rerank ... -> jinaserve <that command> ...
#   anything else              -> run it as is (e.g. `sh` for debugging)
#
# Conveniences on top of the JINASERVE_* variables that jinaserve reads itself:
#   JINASERVE_API_KEYS_FILE  file with one API key per line (Docker/Kubernetes secrets) -> JINASERVE_API_KEYS
#   JINASERVE_OFFLINE=1      also sets HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 (no hub calls at all)
#   JINASERVE_BUNDLE=DIR     serve an offline bundle (`jinaserve bundle`); implies offline mode
# The server is exec'ed, so it is PID 1 and receives SIGTERM directly (graceful drain, exit 0).
set -eu

JINASERVE_BIN="${JINASERVE_BIN:-jinaserve}"
export JINASERVE_HOST="${JINASERVE_HOST:-0.0.0.0}"
export JINASERVE_PORT="${JINASERVE_PORT:-8080}"

if [ -n "${JINASERVE_API_KEYS_FILE:-}" ]; then
    if [ ! -r "${JINASERVE_API_KEYS_FILE}" ]; then
        echo "jinaserve-entrypoint: JINASERVE_API_KEYS_FILE=${JINASERVE_API_KEYS_FILE} is not readable" >&2
        exit 2
    fi
    keys=$(grep -v '^[[:space:]]*#' "${JINASERVE_API_KEYS_FILE}" | tr -d ' \t\r' | grep -v '^$' | paste -sd, -)
    if [ -n "${JINASERVE_API_KEYS:-}" ]; then
        keys="${JINASERVE_API_KEYS},${keys}"
    fi
    export JINASERVE_API_KEYS="${keys}"
fi

if [ -n "${JINASERVE_BUNDLE:-}" ]; then
    export JINASERVE_OFFLINE=1
fi

case "$(printf '%s' "${JINASERVE_OFFLINE:-0}" | tr '[:upper:]' '[:lower:]')" in
    1|true|yes|on)
        export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
        ;;
esac

if [ "$#" -eq 0 ]; then
    set -- serve
fi

case "$1" in
    -*)
        exec "${JINASERVE_BIN}" serve "$@"
        ;;
    serve|models|pull|bundle|embed|rerank)
        exec "${JINASERVE_BIN}" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
