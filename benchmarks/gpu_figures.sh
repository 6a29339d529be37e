#!/usr/bin/env bash
# Every GPU figure the project still lacks, in one call on a lent GPU, in at most 8 minutes of benchmarks:
#
#     bash benchmarks/gpu_figures.sh                       # the default parts: lm ppo cache
#     bash benchmarks/gpu_figures.sh ppo memory            # any parts, in this order
#     GPU_FIGURES_DRY_RUN=1 bash benchmarks/gpu_figures.sh # every default path at CPU size (about 2 minutes)
#
# On your own GPU: install purerl with jax's CUDA build and run the first line; the PureJaxRL comparison is
# optional (skipped without .peers/purejaxrl, a folder holding PureJaxRL's ppo.py, wrappers.py and a gymnax
# 1.0 five-tuple shim, gymnax_compat.py, never committed here).
#
# Parts, with their time limits (the default ones sum to 460 s):
#   lm        150 s  LM train step (tiny, small x f32, bf16; batch 512) and sampling at batch 512, 2048 and
#                    8192 (where the device stops gaining is the batch to sample with): the one-hot
#                    embeddings, f32 logits and attention of issue 16 against the H100 figures before them
#   ppo       210 s  PPO CartPole at PureJaxRL's settings, 150k steps per seed, 64 / 1024 / 4096 seeds:
#                    purerl with scan_unroll 8 in float32 and in bfloat16 (compute_dtype) and PureJaxRL's own
#                    ppo.py, side by side in one process
#   cache     100 s  compile seconds of a first and a second run of `purerl train ppo` and `purerl lm sft`
#   chunking  150 s  memory 180 s  alignment 240 s   (older figures; not in the default run)
#
# On the team's lent GPU (its image has no gymnax, distrax or rliable and cannot download), prepare on the CPU
# machine:
#     bash benchmarks/gpu_wheels.sh
#     bash ../shared/tools/gpu-aot/prepare_purejaxrl.sh <git dir of luchris429/purejaxrl> .peers/purejaxrl
#     (both folders in .git/info/exclude; the device tool's run carries them: carry [".wheels", ".peers"])
# The script installs .wheels if the folder is there, runs each benchmark under its own time limit
# (a slow one cannot starve the rest), writes benchmarks/results/<name>_gpu.{json,md} row by row, and packs
# the results and the log into $OUT when it is set (the device tool's output folder).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$(cd "$(dirname "$0")/.." && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
dry=${GPU_FIGURES_DRY_RUN:-}
tag=gpu
if [ -n "$dry" ]; then tag=dryrun; fi
log=${OUT:-benchmarks/results}/gpu_figures_log.txt
if [ -n "$dry" ]; then log=$(mktemp); fi

bench() {  # bench SECONDS SCRIPT ARGS...: one benchmark under a time limit; a failure is logged, not fatal
    local limit=$1
    shift
    if [ -n "$dry" ]; then limit=$((limit * 2)); fi
    echo "=== $* (limit ${limit}s)" | tee -a "$log"
    timeout "$limit" "$python" "$@" 2>&1 | tee -a "$log"
    echo "=== exit ${PIPESTATUS[0]}" | tee -a "$log"
}

size() {  # size GPU_ARGS -- DRY_RUN_ARGS: the arguments for this run
    local gpu=() cpu=() seen=
    for arg in "$@"; do
        if [ "$arg" = "--" ]; then seen=1; elif [ -n "$seen" ]; then cpu+=("$arg"); else gpu+=("$arg"); fi
    done
    if [ -n "$dry" ]; then echo "${cpu[@]}"; else echo "${gpu[@]}"; fi
}

parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then parts=(lm ppo cache); fi
for part in "${parts[@]}"; do  # every name checked before anything runs
    case $part in
        lm | ppo | cache | chunking | memory | alignment) ;;
        *)
            echo "unknown part '$part': allowed are lm, ppo, cache, chunking, memory, alignment" >&2
            exit 2
            ;;
    esac
done
if [ -d .wheels ]; then
    "$python" -m pip install -q --no-deps .wheels/gymnax-*.whl .wheels/distrax-*.whl .wheels/tfp_nightly-*.whl 2>&1 |
        tee -a "$log"
    "$python" -m pip install -q --no-index --find-links .wheels rliable "pandas<3" 2>&1 | tee -a "$log"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$log"
peers=()
if [ -d .peers/purejaxrl ]; then peers=(--purejaxrl .peers/purejaxrl); fi
for part in "${parts[@]}"; do
    case $part in
        lm)
            # shellcheck disable=SC2046
            bench 150 benchmarks/lm_throughput.py --dtypes float32 bfloat16 --tag "$tag" \
                $(size --batch-size 512 --sample-batch 512 2048 8192 -- --presets tiny --batch-size 16 --sample-batch 16 32 --reps 1)
            ;;
        ppo)
            # shellcheck disable=SC2046
            bench 210 benchmarks/ppo_throughput.py --truncation as-done --scan-unroll 8 --compute-dtype float32 bfloat16 \
                "${peers[@]}" --tag "$tag" \
                $(size --seeds 64 1024 4096 --timesteps 150000 -- --seeds 2 --timesteps 4096)
            ;;
        cache)
            bench 100 benchmarks/compile_cache.py --parts runs --commands "PPO CartPole" "LM SFT" --tag "$tag"
            ;;
        chunking)
            # shellcheck disable=SC2046
            bench 150 benchmarks/chunking_overhead.py --reps 1 --tag "$tag" $(size --seeds 1024 -- --seeds 2 --timesteps 20480)
            ;;
        memory)
            bench 180 benchmarks/update_memory.py --tag "$tag"
            ;;
        alignment)
            # shellcheck disable=SC2046
            bench 240 benchmarks/lm_alignment.py --tag "$tag" $(size --presets tiny small -- --presets tiny)
            ;;
    esac
done
if [ -n "$dry" ]; then
    echo "dry run done; its results (benchmarks/results/*_dryrun*) are removed, its log was $log"
    rm -f benchmarks/results/*_dryrun*
elif [ -n "${OUT:-}" ]; then
    tar -cf "$OUT/results_gpu.tar" benchmarks/results/*_gpu*
fi
