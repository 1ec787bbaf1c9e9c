#!/usr/bin/env bash
# Reward-scale calibration of the paper configuration on gymnasium v5 (the evidence behind
# each task flagfile's --reward_scale). One process per task: 5 scales x 2 seeds = 10
# members in one vmapped state, 100k env steps each, replay sized to the budget,
# 5 deterministic evaluation episodes every 5,000 env steps (the reproduction's protocol).
# Resumable: rerunning the same command continues every unfinished task from its last
# checkpoint. Usage, from the repository root:
#   bash experiments/calibrate_reward_scale.sh RUNS_DIR [TASK ...] [-- FLAG ...]
# TASK: any flagfile name under experiments/flags (halfcheetah hopper walker2d ant humanoid
# humanoidstandup); default: the first four, in that order. FLAGs after `--` are added to
# every task's command (e.g. -- --obs_transform=none). SCALES=a,b,... replaces the grid
# 1,3,10,30,100 (to extend it past an edge: SCALES=0.1,0.3 ... hopper). Each task's run
# goes to RUNS_DIR/TASK-reward-scale, with the grid (when not the default) and the added
# flags in the name, so that an extension never resumes into another grid's run.
set -uo pipefail
usage="usage: [SCALES=a,b,...] bash experiments/calibrate_reward_scale.sh RUNS_DIR [TASK ...] [-- FLAG ...]"
runs=${1:?$usage}
shift
tasks=()
while (($#)) && [[ $1 != -- ]]; do tasks+=("$1"); shift; done
(($#)) && shift   # the `--`
extra=("$@")
((${#tasks[@]})) || tasks=(halfcheetah hopper walker2d ant)
default_scales=1,3,10,30,100
scales=${SCALES:-$default_scales}
flags_dir=$(dirname "$0")/flags
# Bad input is refused before any training starts.
number='[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?'
if ! [[ $scales =~ ^$number(,$number)*$ ]]; then
  echo "calibrate_reward_scale.sh: SCALES=$scales: must be positive numbers separated by commas, e.g. SCALES=0.1,0.3" >&2
  exit 2
fi
# A task is a flagfile that names its environment (--env_id=).
known=$(cd "$flags_dir" && grep -l '^--env_id=' *.flags | sed 's/\.flags$//' | tr '\n' ' ')
for task in "${tasks[@]}"; do
  if [[ " $known" != *" $task "* ]]; then
    echo "calibrate_reward_scale.sh: task '$task': must be one of: ${known% } (a flagfile under $flags_dir that sets --env_id)" >&2
    exit 2
  fi
done
suffix=""
[[ $scales != "$default_scales" ]] && suffix+="-${scales//,/_}"
for f in "${extra[@]}"; do
  f=${f#--}
  suffix+="-${f//[=,\/]/}"
done
py=${PYTHON:-.venv/bin/python}
failed=()
for task in "${tasks[@]}"; do
  "$py" -m experiments.run --flagfile="$flags_dir/${task}.flags" \
    --sweep=reward_scale="$scales" --num_seeds=2 --seed=0 \
    --total_env_steps=100000 --buffer_size=100000 \
    --eval_every=5000 --eval_episodes=5 --checkpoint_every=10000 --log_every_s=60 \
    --run_dir="${runs}/${task}-reward-scale${suffix}" "${extra[@]}" || failed+=("$task")
done
if ((${#failed[@]})); then
  echo "calibrate_reward_scale.sh: failed: ${failed[*]} (rerun the same command to resume)" >&2
  exit 1
fi
