"""Test fixtures shipped for tests and benchmarks: tiny random-weight SD architectures, single-file
export, and CLIP tokenizer files rebuilt from open-clip-torch's vocabulary."""
