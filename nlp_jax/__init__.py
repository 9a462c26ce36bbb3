"""nlp_jax: the core of modern NLP as small, exact, fast JAX functions composed into Flax NNX models."""

__version__ = "0.1.0"
