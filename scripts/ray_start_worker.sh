#!/usr/bin/env bash
# Join a WORKER node to the gpsearch Ray cluster started by scripts/ray_start_head.sh.
#
#   scripts/ray_start_worker.sh HEAD_IP:PORT [extra `ray start` options, e.g. --num-gpus=8]
#
# The node must have the same Python, torch, ray and gpsearch dependencies as the head
# (pip install -e '.[ray]'), see the model (embedded package, a .gguf / HF directory on a shared
# filesystem, or the hub) and mount the shared feature cache. `ray start --address` does not turn
# token auth on by itself: this script sets RAY_AUTH_MODE=token and needs the head's token in
# ~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 HEAD_IP:PORT [ray start options]" >&2
  exit 2
fi
ADDRESS="$1"
shift
RAY="${RAY:-ray}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [ "$RAY_AUTH_MODE" = "token" ] && [ -z "${RAY_AUTH_TOKEN:-}" ] \
   && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] && [ ! -s "$HOME/.ray/auth_token" ]; then
  echo "no cluster token here: copy the head's ~/.ray/auth_token to $HOME/.ray/auth_token" \
       "or export RAY_AUTH_TOKEN=<token>" >&2
  exit 2
fi
exec "$RAY" start --address="$ADDRESS" "$@"
