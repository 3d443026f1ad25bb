#!/usr/bin/env bash
# Submit a gpsearch search to a running Ray cluster with `ray job submit`.
#
#   GPSEARCH_CACHE=/shared/gpsearch-cache scripts/ray_submit_search.sh HEAD_IP [search options]
#   e.g. ... scripts/ray_submit_search.sh 10.0.0.1 --workers 8 --device cuda --eval-timeout 900
#
# Runtime environment: working_dir = this repository (Ray honours .gitignore, so .venv is not
# uploaded; .git and bench/ are excluded too), pip = gpsearch's dependencies from pyproject.toml
# (installed in a virtualenv that sees the node's site-packages, so a preinstalled torch is
# reused; GPSEARCH_PIP=0 skips the pip step when every node already has them), and
# GPSEARCH_CACHE. The feature cache MUST be on a filesystem every node mounts: otherwise each
# node computes its own features (minutes to hours for a large model), and workers on a node
# without them race to write them.
# The search runs as the job's driver on the head node and joins the cluster (--ray-address auto).
# Auth: this machine needs RAY_AUTH_MODE=token (set below) and the cluster's token
# (~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN): the job client sends it.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: GPSEARCH_CACHE=/shared/dir $0 HEAD_IP [gpsearch search options]" >&2
  exit 2
fi
HEAD="$1"
shift
: "${GPSEARCH_CACHE:?set GPSEARCH_CACHE to a feature-cache directory on a filesystem all nodes share}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
RAY="${RAY:-ray}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
RUNTIME_ENV="$("$PY" - "$ROOT" "$GPSEARCH_CACHE" "${GPSEARCH_PIP:-1}" <<'PYEOF'
import json, sys, tomllib
root, cache, pip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
env = {"working_dir": root, "excludes": [".git", "bench", "runs"],
       "env_vars": {"GPSEARCH_CACHE": cache}}
if pip:
    with open(f"{root}/pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    env["pip"] = {"packages": deps, "pip_check": False}
print(json.dumps(env))
PYEOF
)"
exec "$RAY" job submit --address "http://$HEAD:8265" --runtime-env-json "$RUNTIME_ENV" \
  -- python -m gpsearch.cli search --ray-address auto "$@"
