#!/usr/bin/env bash
# Reproduces the jax 0.10 / 2-core CPU hang of jit(vmap(train)) over 3-4 seeds, with XLA:CPU's
# concurrency-optimised scheduler on (XLA's default) and off (purerl's default).
#   bash experiments/xla_cpu_hang/reproduce.sh > experiments/xla_cpu_hang/results.txt
# Each trial is a fresh process training PPO (CartPole defaults, 100k steps per seed, about 12 s when it
# finishes) over SEEDS vmapped seeds from base key TRIAL; a trial still running after 90 s counts as hung.
set -u
PY=${PYTHON:-python}
SCRIPT='import sys, jax, purerl
from purerl.control.ppo import PPOConfig, make_train
keys = jax.random.split(jax.random.key(int(sys.argv[2])), int(sys.argv[1]))
jax.block_until_ready(jax.jit(jax.vmap(make_train(PPOConfig(total_timesteps=100_000))))(keys))'
echo "date: $(date -u +%FT%TZ); cores: $(nproc); $($PY -c 'import jax; print("jax", jax.__version__)')"
for scheduler in true false; do
  for seeds in 3 4; do
    for trial in 0 1 2 3; do
      start=$(date +%s)
      XLA_FLAGS="--xla_cpu_enable_concurrency_optimized_scheduler=$scheduler" timeout 90 "$PY" -c "$SCRIPT" "$seeds" "$trial" 2>/dev/null
      rc=$?
      outcome=$([ $rc -eq 124 ] && echo "HUNG (killed after 90 s)" || echo "finished rc=$rc in $(( $(date +%s) - start )) s")
      echo "scheduler=$scheduler seeds=$seeds key=$trial: $outcome"
    done
  done
done
