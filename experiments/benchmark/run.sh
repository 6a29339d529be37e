#!/usr/bin/env bash
# PPO (and GRPO) across gymnax suites at each env's full budget, 16 seeds from base seed 1 (held out from tuning),
# through `purerl benchmark`; each report is copied to experiments/benchmark/results/<algo>-<suite>/ as it
# finishes. Resumable: run the same line again after any stop (the run directories live in runs/benchmarks/).
#
#     bash experiments/benchmark/run.sh                      # PPO on classic, bsuite, misc; GRPO on classic
#     bash experiments/benchmark/run.sh ppo:minatar          # any algo:suite pairs
set -eu
cd "$(dirname "$0")/../.."
purerl=${PURERL:-.venv/bin/purerl}
pairs=("$@")
if [ ${#pairs[@]} -eq 0 ]; then pairs=(ppo:classic ppo:bsuite ppo:misc grpo:classic); fi
for pair in "${pairs[@]}"; do
    algo=${pair%%:*} suite=${pair#*:}
    out=runs/benchmarks/$algo-$suite
    "$purerl" benchmark --algo "$algo" --suite "$suite" --seeds 16 --out "$out"
    results=experiments/benchmark/results/$algo-$suite
    mkdir -p "$results"
    cp "$out"/report.md "$out"/report.json "$out"/random_policy.json "$out"/*.png "$results"/
    echo "$purerl benchmark --algo $algo --suite $suite --seeds 16 --out $out" > "$results"/command.txt
done
