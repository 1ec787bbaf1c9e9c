#!/usr/bin/env bash
# The reproduction's cpu budget, every claim in the order its runs are shared (each run is
# trained once; later claims find it complete). Resumable: rerun the same command and every
# unfinished run continues from its last checkpoint. From the repository root:
#   bash experiments/reproduce_cpu.sh RUNS_DIR [CLAIM ...]
set -uo pipefail
runs=${1:?usage: reproduce_cpu.sh RUNS_DIR [CLAIM ...]}
shift
claims=${*:-seeds hard components grad_steps tasks sac_vs_ddpg}
py=${PYTHON:-.venv/bin/python}
for claim in $claims; do
  "$py" -m experiments.reproduce --claim="$claim" --budget=cpu --runs_dir="$runs" || exit $?
done
