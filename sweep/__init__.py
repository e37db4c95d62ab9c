"""sweep: grid search over truncated-BPTT subsequence lengths for LSTMs, 30 repeats per point."""

__version__ = "0.1.0"
