"""Side-by-side benchmarks: each figure is ours against the raw engine, in the same run."""
