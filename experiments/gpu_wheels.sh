#!/usr/bin/env bash
# Wheels for the GPU machine lent by the `device` tool (Python 3.12, x86-64, no network
# there; it has jax, flax, optax, chex, orbax, torch, absl, numpy, matplotlib, cloudpickle,
# rich, tqdm, attrs, wrapt, six): gymnasium + MuJoCo for the envs, stable-baselines-jax for
# the race's peer, at the versions this repository's venv was tested with. From the
# repository root (.whl/ is git-ignored; the device call carries it):
#   bash experiments/gpu_wheels.sh            # then: bash experiments/gpu_checks.sh there
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
version() { "$py" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
pkgs=(gymnasium farama-notifications mujoco mujoco-core mujoco-studio glfw pyopengl
      websockets sbx-rl stable_baselines3 tfp-nightly decorator gast dm-tree)
specs=()
for p in "${pkgs[@]}"; do
  v=$(version "$p")
  [ -n "$v" ] || { echo "gpu_wheels: $p is not installed in $py's environment: install" \
                        "the test and bench extras first" >&2; exit 2; }
  specs+=("$p==$v")
done
mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d .whl "${specs[@]}"
ls -1 .whl
du -sh .whl
