"""Stage II active selection (paper §3.3): text pool, sentence embeddings, balanced k-means, misalignment-driven
importance sampling, and `salad-select`, the command that runs them as cached steps."""
