#!/usr/bin/env bash
# The GPU figures issue 13 (item 7) and the race owe, as two short device calls (each well
# inside the device tool's 10-minute limit; a session has about 15 minutes of device time).
# Here first: `bash experiments/gpu_wheels.sh` (the wheels go to .whl/, which is carried).
# Then, on the device machine, from the repository root, with carry [".whl"]:
#   bash experiments/gpu_checks.sh race    # ~5 min: the race's GPU table (equal work, M = 1,
#                                          #   against stable-baselines-jax), the update
#                                          #   alone for M = 1, 64, 256, both configurations,
#                                          #   and the fused call at M = 256 by kernel kind
#   bash experiments/gpu_checks.sh e2e     # ~5 min: the paper configuration end to end,
#                                          #   M = 16 and 64, async envs, sync and overlap;
#                                          #   a sweep through the sharded path (experiments.run)
# Results go to $OUT (the device tool brings them back): JSON, the log, the sweep's summary.
# QUICK=1 shrinks every step count to check the script on a CPU (numbers mean nothing).
set -uo pipefail
part=${1:?usage: gpu_checks.sh race|e2e}
out=${OUT:-/tmp/gpu_checks}
mkdir -p "$out"
py=${PYTHON:-python3}
whl=${WHEELS:-.whl}   # WHEELS=none: use the environment as it is (a CPU check here)
if [ -d "$whl" ] && ls "$whl"/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$whl"/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
# fp32 peak for the "% peak" column: an H100/H200 SXM's dense fp32 (not TF32) rate.
peak=${PEAK_GFLOPS:-67000}
if [ "${QUICK:-0}" = 1 ]; then
  env_id=Pendulum-v1 warm=300 meas=300 update_m=1,2,4 e2e_m=1,2 seeds=1 steps=600 reps=2
else
  env_id=HalfCheetah-v5 warm=2000 meas=3000 update_m=1,64,256 e2e_m=16,64 seeds=8 steps=5000
  reps=5
fi
log="$out/$part.log"
{
  date -u; nvidia-smi -L 2>/dev/null; "$py" -c "import jax; print('jax', jax.__version__, jax.devices())"
  case "$part" in
    race)
      timeout 240 "$py" -m experiments.bench --env_id=$env_id --configs=equal_work \
        --update_only=false --members=1 --warmup_steps=$warm --measure_steps=$meas \
        --peak_gflops=$peak --out="$out/race.json"
      timeout 240 "$py" -m experiments.bench --end_to_end=false --configs=paper,equal_work \
        --update_members=$update_m --update_repeats=$reps --peak_gflops=$peak \
        --out="$out/update.json"
      # Where the fused call's time goes by kernel kind, at the largest M (the kernel count
      # per gradient step bounds the GPU goal of issue 13, item 7).
      timeout 120 "$py" -m experiments.bench --end_to_end=false --update_only=false \
        --op_profile --configs=paper,equal_work --update_members=${update_m##*,} \
        --out="$out/ops.json"
      ;;
    e2e)
      timeout 270 "$py" -m experiments.bench --env_id=$env_id --configs=paper \
        --update_only=false --peer=false --members=$e2e_m --loops=sync,overlap \
        --async_envs --warmup_steps=$((warm / 2)) --measure_steps=$((meas * 2 / 3)) \
        --peak_gflops=$peak --out="$out/e2e.json"
      run=/tmp/gpu_sweep
      rm -rf "$run"
      timeout 150 "$py" -m experiments.run --env_id=$env_id \
        --flagfile=experiments/flags/paper.flags --sweep=reward_scale=3,10 \
        --num_seeds=$seeds --total_env_steps=$steps --start_steps=$((steps / 5)) \
        --buffer_size=$steps --eval_every=$((steps / 2)) --eval_episodes=2 \
        --checkpoint_every=$((steps / 2)) --log_every_s=20 --run_dir="$run"
      cp "$run/summary.json" "$out/sweep-summary.json"
      cp "$run/metrics.csv" "$out/sweep-metrics.csv"
      ;;
    *) echo "gpu_checks: part $part: must be race or e2e" >&2; exit 2 ;;
  esac
  date -u
} 2>&1 | tee "$log"
