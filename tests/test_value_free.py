"""The value-free critic of SAC 2018b (`value_network=False`): no V, target Q networks, and
the Q target c r + gamma (1 - done) (min_j Qbar_j(s', a') - alpha log pi(a'|s')) with a
fresh a' ~ pi(.|s'), checked against an independent computation (the mixture density in
float64 scipy), its stop-gradients, the Polyak update of Qbar, what the state holds, the
refusal of the likelihood ratio without V, and a CLI run that checkpoints and resumes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from cli_util import cli, read_rows
from sac_jax import agent, gmm, replay

OBS, ACT, B = 3, 2, 8
TINY = dict(hidden_sizes=(16, 16), batch_size=B, buffer_size=64, start_steps=10,
            value_network=False, num_q=2, policy_gradient="reparameterized",
            num_components=1, reg=0.0)


def _state_and_batch(cfg, seed=0):
  ag = agent.Agent(cfg, OBS, ACT)
  s = ag.init(jax.random.PRNGKey(seed), agent.HParams.from_config(cfg))
  # Targets that differ from the online heads, so using Q instead of Qbar would show.
  s = s._replace(q_target_params=jax.tree.map(lambda x: 0.7 * x + 0.05, s.q_target_params))
  rng = np.random.default_rng(seed)
  batch = replay.Transition(
      rng.normal(size=(B, OBS)).astype(np.float32),
      rng.uniform(-1, 1, (B, ACT)).astype(np.float32),
      rng.normal(size=B).astype(np.float32), rng.normal(size=(B, OBS)).astype(np.float32),
      (rng.random(B) < 0.3).astype(np.float32))
  return ag, s, batch


def _ref_squashed_log_prob(out, u):
  """float64 scipy: log sum_k softmax(w)_k prod_j N(u_j; mu_kj, sigma_kj) - log|tanh'|."""
  w = np.asarray(out.logits, np.float64)
  mu, ls = np.asarray(out.means, np.float64), np.asarray(out.log_stds, np.float64)
  u = np.asarray(u, np.float64)
  comp = stats.norm.logpdf(u[:, None, :], mu, np.exp(ls)).sum(-1)
  logp = special.logsumexp(comp + w - special.logsumexp(w, -1, keepdims=True), -1)
  return logp - np.log(1.0 - np.tanh(u) ** 2).sum(-1)


@pytest.mark.parametrize("extra", [{}, dict(num_components=3, num_q=1,
                                            policy_gradient="mixture_reparameterized",
                                            auto_alpha=True, alpha=0.3, reward_scale=2.0)])
def test_q_gradient_matches_an_independent_target(extra):
  cfg = agent.SACConfig(**{**TINY, **extra})
  ag, s, b = _state_and_batch(cfg)
  key = jax.random.PRNGKey(7)
  fresh = ag.fresh_action(s.policy_params, b.obs, key)
  v_grads, q_grads, metrics = jax.jit(ag.critic_gradients)(s, b, key, fresh)
  h = s.hparams
  alpha = float(jnp.exp(s.log_alpha)) if cfg.auto_alpha else float(h.alpha)
  # The next action: a fresh sample at s' from the current policy (the library's draw).
  out_next = ag.nets.policy.apply(s.policy_params, b.next_obs)
  u_next = gmm.sample(jax.random.fold_in(key, 1), out_next.logits, out_next.means,
                      out_next.log_stds)
  q_next = np.min(np.asarray(ag.nets.q.apply(s.q_target_params, b.next_obs,
                                             jnp.tanh(u_next)), np.float64), axis=0)
  soft_next = q_next - alpha * _ref_squashed_log_prob(out_next, u_next)
  target = (float(h.reward_scale) * np.asarray(b.reward, np.float64) + float(h.gamma) *
            (1.0 - np.asarray(b.terminated, np.float64)) * soft_next)
  # float32 network outputs against the float64 target: rtol 1e-5, atol 1e-5.
  np.testing.assert_allclose(float(metrics["q_target"]), target.mean(), rtol=1e-5,
                             atol=1e-5)
  t32 = jnp.asarray(target, jnp.float32)
  ref = jax.grad(lambda qp: jnp.sum(0.5 * jnp.mean(
      jnp.square(ag.nets.q.apply(qp, b.obs, b.action) - t32[None]), axis=-1)))(s.q_params)
  chex.assert_trees_all_close(q_grads, ref, rtol=1e-4, atol=1e-6)
  assert v_grads is None and "v_loss" not in metrics


def test_no_value_network_is_created_and_qbar_moves_by_tau():
  cfg = agent.SACConfig(**TINY, tau=0.2)
  ag, s, b = _state_and_batch(cfg)
  assert s.v_params is None and s.v_target_params is None and s.v_opt_state is None
  new, _ = jax.jit(ag.gradient_step)(s, b, jax.random.PRNGKey(1))
  assert new.v_params is None
  expected = jax.tree.map(lambda q, t: 0.2 * q + 0.8 * t, new.q_params, s.q_target_params)
  chex.assert_trees_all_close(new.q_target_params, expected, rtol=1e-6, atol=1e-7)
  # The paper's configuration keeps V and has no target Q.
  paper = agent.Agent(agent.SACConfig(hidden_sizes=(8,), batch_size=4, buffer_size=8),
                      OBS, ACT).init(jax.random.PRNGKey(0))
  assert paper.q_target_params is None and paper.v_params is not None


def test_likelihood_ratio_without_v_is_refused():
  with pytest.raises(ValueError, match="likelihood_ratio.*value_network"):
    agent.SACConfig(value_network=False, policy_gradient="likelihood_ratio")


def test_modern_flagfile_is_value_free_and_resumes(tmp_path):
  """modern.flags over a task flagfile: no V anywhere (metrics, checkpoint), reg 0, and
  a kill-free resume from 200 to 300 steps continues the same members."""
  run = str(tmp_path / "run")
  args = ["--flagfile=experiments/flags/hopper.flags",
          "--flagfile=experiments/flags/modern.flags", "--env_id=Pendulum-v1",
          "--hidden_sizes=16,16", "--batch_size=16", "--start_steps=100",
          "--buffer_size=400", "--eval_every=100", "--eval_episodes=1", "--num_seeds=2",
          "--checkpoint_every=100", "--log_every_s=0", f"--run_dir={run}"]
  first = cli("experiments.run", *args, "--total_env_steps=200")
  assert first.returncode == 0, first.stderr[-3000:]
  second = cli("experiments.run", *args, "--total_env_steps=300")
  assert second.returncode == 0, second.stderr[-3000:]
  rows = read_rows(run)
  assert [(int(r["env_step"]), int(r["member"])) for r in rows] == [
      (s, m) for s in (100, 200, 300) for m in (0, 1)]
  assert not any(k.startswith("train_v") for k in rows[0]), list(rows[0])
  assert float(rows[-1]["reg"]) == 0.0 and rows[-1]["train_q_loss"] not in ("", None)
