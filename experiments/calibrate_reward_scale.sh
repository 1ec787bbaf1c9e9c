#!/usr/bin/env bash
# Reward-scale calibration of the paper configuration on gymnasium v5 (the evidence behind
# each task flagfile's --reward_scale). One process per task: 5 scales x 2 seeds = 10
# members in one vmapped state, 100k env steps each, replay sized to the budget,
# 5 deterministic evaluation episodes every 5,000 env steps (the reproduction's protocol).
# Resumable: rerunning the same command continues every unfinished task from its last
# checkpoint. Usage, from the repository root:
#   bash experiments/calibrate_reward_scale.sh RUNS_DIR [TASK ...]
# TASK: any flagfile name under experiments/flags (halfcheetah hopper walker2d ant humanoid
# humanoidstandup); default: the first four, in that order.
set -uo pipefail
runs=${1:?usage: calibrate_reward_scale.sh RUNS_DIR [TASK ...]}
shift
tasks=${*:-halfcheetah hopper walker2d ant}
py=${PYTHON:-.venv/bin/python}
for task in $tasks; do
  "$py" -m experiments.run --flagfile="experiments/flags/${task}.flags" \
    --sweep=reward_scale=1,3,10,30,100 --num_seeds=2 --seed=0 \
    --total_env_steps=100000 --buffer_size=100000 \
    --eval_every=5000 --eval_episodes=5 --checkpoint_every=10000 --log_every_s=60 \
    --run_dir="${runs}/${task}-reward-scale"
done
