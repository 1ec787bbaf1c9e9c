"""The compiled per-env-step programs never copy the replay buffer (issue 13, item 5).

The whole TrainState, the [M, capacity, ...] replay buffer included, goes through the
jitted step's `lax.cond` and `lax.scan` carry. Speed cannot be asserted (timing noise here
is larger than the effect), so the compiled executables are checked structurally, at
replay capacities 1e3 and 1e5:

- `memory_analysis()`: the temporary memory does not grow with the capacity, and every
  byte of the donated state is aliased to an output (updated in place, not reallocated);
- the optimized HLO (`as_text()`): the only instructions that produce a buffer-shaped array
  are parameters, tuple accesses, bitcasts and the in-place row write of the insert
  (dynamic-update-slice, or scatter under vmap), bare or as the root of a fusion. A copy, a
  select or any other elementwise pass over a whole buffer is reported.

Checked for `Agent.make_step` (the synchronous call), `Agent.make_update` and
`Agent.make_act` (the two calls of `LoopConfig.overlap`; act must not take the buffer at
all). Two deliberately copying versions of the step (a select over the whole replay, as a
divergence freeze applied to the whole state would do; the state not donated) must fail
the same checks, so the checks can fail.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sac_jax import agent, replay

OBS, ACT = 3, 1
SMALL, LARGE = 1_000, 100_000
# Slack for the temporary memory between the two capacities: far below one replay field
# at the larger capacity (a reward column of one member is 4 * LARGE = 400 kB).
TEMP_SLACK = 16 * 1024


def make_agent(capacity: int) -> agent.Agent:
  # The equal-work (SAC 2018b) graph with tiny layers; G = 2 keeps the scan a real loop.
  cfg = agent.SACConfig(num_components=1, hidden_sizes=(8, 8), batch_size=4,
                        buffer_size=capacity, start_steps=0, grad_steps=2,
                        policy_gradient="reparameterized", num_q=2, auto_alpha=True,
                        value_network=False)
  return agent.Agent(cfg, OBS, ACT)


def abstract_state(ag: agent.Agent, m: int):
  return jax.eval_shape(jax.vmap(ag.init), jax.random.split(jax.random.PRNGKey(0), m))


def state_bytes(state) -> int:
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))


def replay_bytes(state) -> int:
  return state_bytes(state.replay)


def compile_step(ag, m, make=None):
  state = abstract_state(ag, m)
  fn = (make or ag.make_step)()
  exe = fn.lower(state, agent.empty_transition(m, OBS, ACT), True,
                 np.zeros((m, OBS), np.float32), True).compile()
  return state, exe


def compile_update(ag, m):
  state = abstract_state(ag, m)
  key = jax.ShapeDtypeStruct(state.key.shape, state.key.dtype)
  ok = np.ones((m,), bool)
  exe = ag.make_update().lower(state, key, ok, agent.empty_transition(m, OBS, ACT), True,
                               True).compile()
  return state, exe


def compile_act(ag, m):
  state = abstract_state(ag, m)
  exe = ag.make_act().lower(state, np.zeros((m, OBS), np.float32), True).compile()
  return state, exe


# ---------------------------------------------------------------- the HLO check
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT )?%?([\w.\-]+) = (\w+)\[([0-9,]*)\]\S* ([\w\-]+)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
IN_PLACE = {"dynamic-update-slice", "scatter"}
PASS = {"parameter", "get-tuple-element", "bitcast"}


def buffer_ops(hlo: str, capacity: int) -> list[str]:
  """The instructions of `hlo` that produce an array with a `capacity`-long dimension and
  are neither a pass-through (parameter, tuple access, bitcast) nor an in-place row write
  (dynamic-update-slice / scatter, or a fusion whose root is one): each is a pass over a
  whole buffer, and most are a copy of it."""
  roots, comp = {}, None
  for line in hlo.splitlines():
    c = _COMP.match(line)
    if c:
      comp = c.group(1)
      continue
    i = _INSTR.match(line)
    if i and i.group(1):
      roots[comp] = i.group(5)
  bad = []
  for line in hlo.splitlines():
    i = _INSTR.match(line)
    if not i or str(capacity) not in i.group(4).split(","):
      continue
    op = i.group(5)
    if op in PASS or op in IN_PLACE:
      continue
    if op == "fusion":
      called = _CALLS.search(line)
      if called and roots.get(called.group(1)) in IN_PLACE:
        continue
    bad.append(line.strip()[:160])
  return bad


def check(state, exe, capacity) -> dict:
  """The structural facts of one compiled program, for the asserts and their messages."""
  ma = exe.memory_analysis()
  return dict(temp=ma.temp_size_in_bytes, alias=ma.alias_size_in_bytes,
              argument=ma.argument_size_in_bytes, output=ma.output_size_in_bytes,
              state=state_bytes(state), replay=replay_bytes(state),
              ops=buffer_ops(exe.as_text(), capacity))


def assert_in_place(small: dict, large: dict, unused: int = 0):
  """`unused`: bytes of donated leaves the program never reads (replaced wholesale), so
  jit prunes them and they alias nothing."""
  assert large["replay"] >= 90 * small["replay"] > 0  # the capacity really grew
  for r, cap in ((small, SMALL), (large, LARGE)):
    assert not r["ops"], (f"whole-buffer operations at capacity {cap}:\n"
                          + "\n".join(r["ops"]))
    assert r["alias"] == r["state"] - unused, (
        f"capacity {cap}: {r['alias']} bytes aliased of the donated state's {r['state']}")
  assert large["temp"] <= small["temp"] + TEMP_SLACK, (
      f"temporary memory grows with the capacity: {small['temp']} bytes at {SMALL}, "
      f"{large['temp']} at {LARGE}")


@pytest.mark.parametrize("m", [1, 4])
def test_step_never_copies_the_replay_buffer(m):
  small = check(*compile_step(make_agent(SMALL), m), SMALL)
  large = check(*compile_step(make_agent(LARGE), m), LARGE)
  assert_in_place(small, large)


def test_overlap_update_never_copies_the_replay_buffer():
  small = check(*compile_update(make_agent(SMALL), 4), SMALL)
  state, exe = compile_update(make_agent(LARGE), 4)
  large = check(state, exe, LARGE)
  # The state's key is replaced by the one `act` returned: never read, so not aliased.
  assert_in_place(small, large, unused=state_bytes(state.key))


def test_overlap_act_does_not_take_the_replay_buffer():
  small = check(*compile_act(make_agent(SMALL), 4), SMALL)
  large = check(*compile_act(make_agent(LARGE), 4), LARGE)
  # Nothing of the buffer enters the call: arguments and temporaries are the same at both
  # capacities (jit prunes the unused replay leaves), and nothing is donated.
  assert large["argument"] == small["argument"] < small["replay"]
  assert large["temp"] == small["temp"] and large["alias"] == 0
  assert not large["ops"]


# ---------------------------------------------------------------- the checks can fail
def _copying_make_step(ag):
  """The step with a select over the whole replay: both buffers are live at once."""
  def step(state, transition, has_transition, obs, do_update):
    new, action, metrics = ag.step(state, transition, has_transition, obs, do_update)
    keep = jnp.all(jnp.isfinite(action))
    rep = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new.replay, state.replay)
    return new._replace(replay=rep), action, metrics
  return lambda: jax.jit(jax.vmap(step, in_axes=(0, 0, None, 0, None)), donate_argnums=0)


def test_the_checks_catch_a_step_that_copies_the_buffer():
  small = check(*compile_step(make_agent(SMALL), 1, _copying_make_step(
      make_agent(SMALL))), SMALL)
  ag = make_agent(LARGE)
  large = check(*compile_step(ag, 1, _copying_make_step(ag)), LARGE)
  assert large["ops"], "the select over the whole buffer was not found in the HLO"
  with pytest.raises(AssertionError):
    assert_in_place(small, large)
  assert large["temp"] > small["temp"] + TEMP_SLACK


def test_the_checks_catch_a_step_that_does_not_donate():
  ag = make_agent(SMALL)
  undonated = lambda: jax.jit(jax.vmap(ag.step, in_axes=(0, 0, None, 0, None)))
  r = check(*compile_step(ag, 1, undonated), SMALL)
  assert r["alias"] == 0 < r["state"]
