#!/usr/bin/env bash
# Every language-model experiment in the order they build on each other (they share the runs under
# runs/lm_pipeline/: SFT, pairs, reward models). Resumable: run it again after any stop.
#
#     bash experiments/lm/run_all.sh                 # about 4 hours on 2 CPU cores
#     bash experiments/lm/run_all.sh learned_reward defaults   # some of them
set -eu
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then parts=(learned_reward defaults overoptimization kl_frontier verifiable); fi
mkdir -p runs/lm_pipeline
for part in "${parts[@]}"; do
    "$python" "experiments/lm/$part.py" 2>> "runs/lm_pipeline/$part.log"
done
