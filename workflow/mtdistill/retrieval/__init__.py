"""Retrieval-augmented KD (ReAugKD, Zhang et al. 2023) adapted to token-level generation, as kNN-MT
retrieves: a knowledge base of the teacher's decoder states (keys, through a projection head trained
with a supervised contrastive loss) and its next-token distributions (values) at every target
position of the transfer labels; the `reaugkd` objective aligns the student's similarities to it with
a relational loss, and decoding can mix its kNN distribution into the student's at every step.

kb          the knowledge base: FAISS shards of keys and their values (`KnowledgeBase`)
projection  the teacher's projection head and its token-level supervised contrastive loss
head        the student's projection head, saved in its model directory
knn         decoding with retrieval (a LogitsProcessor)
"""

# The evaluation of a retrieval-augmented student decoding with its knowledge base is <student>.knn.
KNN_SUFFIX = ".knn"
