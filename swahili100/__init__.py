"""Swahili-100: a JAX/Flax pipeline from raw Swahili text to an aligned, exported ~100M LM."""

__version__ = "0.1.0"
