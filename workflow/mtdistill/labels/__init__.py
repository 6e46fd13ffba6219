"""Label strategies: how one hypothesis (or the reference) becomes a transfer sentence's label.

`STRATEGIES` maps a name to a `Strategy`: whether it needs the original reference (so it labels
bitext only), which extra inputs the workflow gives its job ("reranker": the tuned weights and the
selected scorers' features; "mbr": the MBR scorer's features), among which n-best rows it chooses
(the left-to-right teacher's own beam, or the merged list) and its `choose` function. The built-ins
are in `strategies.py`; an extension is one module that registers with `strategy(...)` and is made
known through the `mtdistill.label_strategies` entry point group.
"""

from .base import INPUTS, STRATEGIES, LabelOptions, Strategy, strategy  # noqa: F401
from . import strategies  # noqa: E402,F401  the built-ins register themselves
