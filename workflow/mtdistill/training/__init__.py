"""Training: batching (`batches`), data-parallel plumbing (`distributed`), the loop (`loop`) and the
one owner of the training.json format (`record`). Objectives plug into the loop (`mtdistill.objectives`)."""
