#!/usr/bin/env bash
# Start the HEAD node of a Ray cluster for gpsearch, with token authentication on.
#
#   scripts/ray_start_head.sh [PORT] [extra `ray start` options, e.g. --num-gpus=8]
#
# Token: Ray 2.60's `ray start --head` enables token auth only when RAY_AUTH_MODE=token (or when
# the mode is unset and a token already exists) and never creates a token itself. This script
# sets RAY_AUTH_MODE=token and creates ~/.ray/auth_token with `ray get-auth-token --generate` if
# no token is configured (RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token). Copy that
# token to every worker node and to the machine you submit from (see docs/ray.md).
# The dashboard (port 8265, used by `ray job submit`) listens on all interfaces: keep the
# cluster on a private network; the token does not encrypt traffic.
set -euo pipefail
PORT="${1:-6379}"
[ $# -gt 0 ] && shift
RAY="${RAY:-ray}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [ "$RAY_AUTH_MODE" = "token" ] && [ -z "${RAY_AUTH_TOKEN:-}" ] \
   && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] && [ ! -s "$HOME/.ray/auth_token" ]; then
  "$RAY" get-auth-token --generate > /dev/null
  echo "generated a cluster token in $HOME/.ray/auth_token"
fi
"$RAY" start --head --port="$PORT" --dashboard-host=0.0.0.0 "$@"
HEAD_IP="$(hostname -I 2>/dev/null | awk '{print $1}')"
cat <<MSG

Head started (auth mode: $RAY_AUTH_MODE). Next:
  1. copy the token to each worker node:   scp ~/.ray/auth_token WORKER:~/.ray/auth_token
  2. on each worker node:                   scripts/ray_start_worker.sh ${HEAD_IP:-HEAD_IP}:$PORT
  3. from your machine (token copied too):  scripts/ray_submit_search.sh ${HEAD_IP:-HEAD_IP} --workers N ...
Stop with: ray stop
MSG
