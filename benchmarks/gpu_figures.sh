#!/usr/bin/env bash
# Every GPU figure the benchmarks publish, in one call on a lent GPU:
#
#     bash benchmarks/gpu_figures.sh ppo chunking memory lm alignment   # any of these parts, in this order
#
# Each benchmark runs under its own time limit (a slow one cannot starve the rest) and writes
# benchmarks/results/<name>_gpu.{json,md}; the results and the whole log are packed into $OUT when it is set
# (the device tool's output folder), else left in benchmarks/results/.
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
log=${OUT:-benchmarks/results}/gpu_figures_log.txt
python=${PYTHON:-python3}

bench() {  # bench SECONDS SCRIPT ARGS...: one benchmark under a time limit; a failure is logged, not fatal
    local limit=$1
    shift
    echo "=== $* (limit ${limit}s)" | tee -a "$log"
    timeout "$limit" "$python" "$@" 2>&1 | tee -a "$log"
    echo "=== exit ${PIPESTATUS[0]}" | tee -a "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
for part in "$@"; do
    case $part in
        ppo)
            bench 400 benchmarks/ppo_throughput.py --seeds 64 256 1024 4096 8192 --truncation as-done --tag gpu
            ;;
        chunking)
            bench 150 benchmarks/chunking_overhead.py --seeds 1024 --reps 1 --tag gpu
            ;;
        memory)
            bench 180 benchmarks/update_memory.py --tag gpu
            ;;
        lm)
            bench 200 benchmarks/lm_throughput.py --dtypes float32 bfloat16 --batch-size 512 --tag gpu
            bench 90 benchmarks/lm_throughput.py --presets small --dtypes bfloat16 --batch-size 2048 --tag gpu_batch2048
            ;;
        alignment)
            bench 240 benchmarks/lm_alignment.py --presets tiny small --tag gpu
            ;;
        *)
            echo "unknown part '$part': allowed are ppo, chunking, memory, lm, alignment" >&2
            exit 2
            ;;
    esac
done
if [ -n "${OUT:-}" ]; then
    tar -cf "$OUT/results_gpu.tar" benchmarks/results/*_gpu*
fi
