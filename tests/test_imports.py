"""The package's modules import one another in one direction: no module imports one that
imports it back, directly or through others, at the top or inside a function (a deferred
import still ties the two together). Read from the source with `ast`, nothing imported.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "sac_jax"


def package_imports(source: str, modules: set[str]) -> set[str]:
  """The sac_jax modules (by short name, among `modules`) that `source` imports anywhere."""
  out = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 1:  # from . / from .x
      base = f"sac_jax.{node.module}" if node.module else "sac_jax"
      names = [base] + [f"{base}.{a.name}" for a in node.names]
    else:
      continue
    for name in names:
      parts = name.split(".")
      if parts[0] == "sac_jax" and len(parts) > 1 and parts[1] in modules:
        out.add(parts[1])
  return out


def import_graph() -> dict[str, set[str]]:
  modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
  return {m: package_imports((PKG / f"{m}.py").read_text(), modules) - {m}
          for m in sorted(modules)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle as a path [a, b, ..., a], or None (depth-first search)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    path.append(m)
    for n in sorted(graph.get(m, ())):
      if state.get(n) == 1:
        return path[path.index(n):] + [n]
      if n not in state:
        found = visit(n)
        if found:
          return found
    path.pop()
    state[m] = 2
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_the_cycle_finder_and_the_import_reader():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"a"}}) == ["a", "a"]
  src = ("import os\nfrom sac_jax import agent as a, gmm\nimport sac_jax.replay\n"
         "def f():\n  from sac_jax.loop import train\n  from . import envs\n"
         "  from .ddpg import explore\n  from jax import lax\n")
  modules = {"agent", "gmm", "replay", "loop", "envs", "ddpg", "settings"}
  assert package_imports(src, modules) == modules - {"settings"}


def test_the_package_imports_in_one_direction():
  graph = import_graph()
  assert {"agent", "ddpg", "learners", "loop", "protocol", "recorders"} <= set(graph)
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["settings", "gmm", "replay", "rundir", "envs"])
def test_the_bottom_modules_import_no_other_module_of_the_package(module):
  assert import_graph()[module] == set()
