#!/usr/bin/env bash
# Reproduces the jax 0.10 / 2-core CPU hang of jit(vmap(train)) over 3-4 seeds, with XLA:CPU's
# concurrency-optimised scheduler on (XLA's default) and off (purerl's default).
#   bash experiments/xla_cpu_hang/reproduce.sh > experiments/xla_cpu_hang/results.txt
# Part 1: each trial is a fresh process training PPO (CartPole defaults, 100k steps per seed, about 15 s
# when it finishes) over SEEDS vmapped seeds from base key TRIAL; a trial still running after 90 s is hung.
# Part 2: each trial is a fresh process that compiles and runs three such trainings in a row (base keys 0,
# 1, 2), the pattern of the two hangs seen in this session; still running after 150 s counts as hung.
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

SCRIPT3='import sys, jax, purerl
from purerl.control.ppo import PPOConfig, make_train
for base in range(3):
    keys = jax.random.split(jax.random.key(base), int(sys.argv[1]))
    jax.block_until_ready(jax.jit(jax.vmap(make_train(PPOConfig(total_timesteps=100_000))))(keys))
    print("key", base, "done", flush=True)'
for scheduler in true false; do
  for trial in 0 1 2; do
    for seeds in 4 3; do
      start=$(date +%s)
      out=$(XLA_FLAGS="--xla_cpu_enable_concurrency_optimized_scheduler=$scheduler" timeout 150 "$PY" -c "$SCRIPT3" "$seeds" 2>/dev/null)
      rc=$?
      echo "scheduler=$scheduler seeds=$seeds trial=$trial (3 keys): rc=$rc after $(( $(date +%s) - start )) s; $(echo $out | tr '\n' ' ')"
    done
  done
done
