"""Learning with the paper's algorithm: V + target V, one Q, a K = 4 Gaussian mixture
trained with the likelihood-ratio gradient, the temperature folded into the reward scale
(alpha = 1), 128 x 128 ReLU networks, batch 128, G = 1, two members vmapped.

Thresholds on the best evaluation are the issue's and are far above what a broken learner
reaches (a random or untrained policy scores about -1,200 to -1,600 on Pendulum and 5 to 50
on InvertedPendulum; the learning curves printed on failure show where it got). A best
evaluation can be one lucky episode batch, so each test also asserts on the END of
training: the mean of the last LAST evaluations (the last quarter of Pendulum's budget, the
last sixth of InvertedPendulum's) per member. Their thresholds come from the curves of
eight members measured with these exact settings (seeds 0-7, 2026-11-24, CPU):

  Pendulum, mean of the last 5: -120 to -168 (solved from about 7k steps on; one member's
  single evaluations range -72 to -265 after that). Threshold -300: the issue's threshold
  for the best evaluation, now required of the average of the last 25 episodes; untrained
  scores are below -900 and the take-off phase (5-6k steps) -150 to -470.
  InvertedPendulum, mean of the last 5: 549 for one member (its last evaluations alternate
  between 1000 and 190-400), 1000 for the seven others. Threshold 300: before take-off,
  while a policy only balances briefly, 5-evaluation means are 70 to 200 (up to 430 for a
  member that was already half-way), so a learner that never gets, or does not stay, past
  that plateau fails.
"""

import numpy as np

from sac_jax import agent, loop

LAST = 5  # evaluations averaged at the end of training

PAPER = dict(num_components=4, hidden_sizes=(128, 128), batch_size=128,
             policy_gradient="likelihood_ratio", num_q=1, alpha=1.0, lr=3e-4, tau=0.01,
             gamma=0.99, reg=1e-3, grad_steps=1)


def _curve(env_id, steps, reward_scale, eval_every, eval_episodes, start_steps):
  cfg = agent.SACConfig(**PAPER, reward_scale=reward_scale, buffer_size=steps,
                        start_steps=start_steps)
  history = loop.train(cfg, loop.LoopConfig(env_id, num_members=2, seed=0,
                                            total_env_steps=steps, eval_every=eval_every,
                                            eval_episodes=eval_episodes))
  steps_axis = np.array([r.env_step for r in history])
  returns = np.stack([r.returns.mean(axis=1) for r in history])  # [evals, members]
  table = "\n".join(f"{s:>6} {np.array2string(r, precision=1)}"
                    for s, r in zip(steps_axis, returns))
  print(f"{env_id} evaluation returns per member:\n{table}")
  return steps_axis, returns, table


def test_pendulum_reaches_minus_300_within_20k_steps_on_both_members():
  steps, returns, table = _curve("Pendulum-v1", 20_000, reward_scale=1.0,
                                 eval_every=1000, eval_episodes=5, start_steps=1000)
  assert steps[-1] == 20_000
  assert np.all(returns[0] < -900), f"the first evaluation should be untrained:\n{table}"
  best = returns.max(axis=0)
  assert np.all(best >= -300), f"best per member {best}:\n{table}"
  last = returns[-LAST:].mean(axis=0)
  assert np.all(last >= -300), (
      f"mean of the last {LAST} evaluations per member {last}:\n{table}")


def test_inverted_pendulum_reaches_900_within_30k_steps_on_both_members():
  steps, returns, table = _curve("InvertedPendulum-v5", 30_000, reward_scale=1.0,
                                 eval_every=1000, eval_episodes=5, start_steps=1000)
  assert steps[-1] == 30_000
  best = returns.max(axis=0)
  assert np.all(best >= 900), f"best per member {best}:\n{table}"
  last = returns[-LAST:].mean(axis=0)
  assert np.all(last >= 300), (
      f"mean of the last {LAST} evaluations per member {last}:\n{table}")
