"""HypoNet wildcards (study 3): ``wildcards`` (the stage), ``wordnet``, ``imagenet`` (the offline classifier)."""
