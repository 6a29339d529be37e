#!/usr/bin/env bash
# Wheels for the team's lent GPU, whose image (Python 3.12, jax 0.11, numpy, scipy) has none of purerl's other
# dependencies and cannot download: run on a machine that can, then carry .wheels with benchmarks/gpu_figures.sh.
#
#     bash benchmarks/gpu_wheels.sh            # about 58 MB into .wheels/ (in .git/info/exclude)
#
# gymnax, distrax and tfp-nightly go in without their dependencies (installed --no-deps: their jax-side ones
# are in the image); rliable, which has no wheel of its own, is built here, and its chain (arch, pandas < 3,
# seaborn, statsmodels, matplotlib, ...) is downloaded for Python 3.12 on manylinux x86_64, less numpy and
# scipy, which jax brings. gpu_figures.sh installs the chain from the folder alone (--no-index).
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
dir=.wheels
mkdir -p "$dir"
target=(--python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux_2_28_x86_64)
"$python" -m pip download -q --no-deps -d "$dir" "${target[@]}" \
    gymnax==1.0.1 distrax==0.1.9 tfp-nightly==0.26.0.dev20261027
"$python" -m pip wheel -q --no-deps -w "$dir" rliable==1.2.0
"$python" -m pip download -q -d "$dir" "${target[@]}" "arch>=5.3.1,<8" "pandas<3" seaborn absl-py
rm -f "$dir"/numpy-* "$dir"/scipy-*
du -sh "$dir"
