"""synthmix: measure how the fake:real ratio of training data changes what a model learns."""

__version__ = "0.1.0"
