#!/usr/bin/env bash
# PPO (and GRPO) across gymnax suites at each env's full budget, 16 seeds from base seed 1 (held out from tuning),
# through `purerl benchmark`; each report is copied to experiments/benchmark/results/<algo>-<suite>/ as it
# finishes. Resumable: run the same line again after any stop (the run directories live in runs/benchmarks/).
#
#     bash experiments/benchmark/run.sh                      # PPO on classic, bsuite, misc; GRPO on classic
#     bash experiments/benchmark/run.sh ppo:minatar          # any algo:suite pairs
#     SEEDS=4 bash experiments/benchmark/run.sh ppo:minatar  # fewer seeds (MinAtar's 10M steps on a CPU)
#     ENVS="Breakout-MinAtar Asterix-MinAtar" bash ...       # these envs of the suite, in this order
set -eu
cd "$(dirname "$0")/../.."
purerl=${PURERL:-.venv/bin/purerl}
seeds=${SEEDS:-16}
envs=(${ENVS:-})
pairs=("$@")
if [ ${#pairs[@]} -eq 0 ]; then pairs=(ppo:classic ppo:bsuite ppo:misc grpo:classic); fi
for pair in "${pairs[@]}"; do
    algo=${pair%%:*} suite=${pair#*:}
    out=runs/benchmarks/$algo-$suite
    args=(--algo "$algo" --suite "$suite" --seeds "$seeds" --out "$out")
    if [ ${#envs[@]} -gt 0 ]; then args+=(--envs "${envs[@]}"); fi
    "$purerl" benchmark "${args[@]}"
    results=experiments/benchmark/results/$algo-$suite
    mkdir -p "$results"
    cp "$out"/report.md "$out"/report.json "$out"/random_policy.json "$out"/*.png "$results"/
    echo "$purerl benchmark ${args[*]}" > "$results"/command.txt
done
