"""turnout benchmark suite: `make bench` prints every figure beside its same-run baseline."""
