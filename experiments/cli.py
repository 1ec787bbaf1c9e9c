"""What the experiments' command-line entry points share: bad input is one line.

    class UsageError: raised for bad input; printed as `error: ...`, exit status 2.
    run(main): absl's app.run of `main`, turning a UsageError into that line (anything else,
    a bug, keeps its traceback).
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app


class UsageError(ValueError):
  """Bad input: reported as one line, exit status 2."""


def run(main: Callable[[list[str]], int]) -> None:
  def guarded(argv):
    try:
      return main(argv)
    except UsageError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      return 2
  app.run(guarded)
