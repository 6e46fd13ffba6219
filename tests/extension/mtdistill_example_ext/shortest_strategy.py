"""Label strategy `shortest`: the shortest non-degenerate hypothesis of the merged list."""

from mtdistill.core.nbest import pick
from mtdistill.labels import strategy


@strategy("shortest")
def shortest(candidates, sentences, options):
    return pick(candidates, -candidates.hypothesis.str.len().to_numpy())
