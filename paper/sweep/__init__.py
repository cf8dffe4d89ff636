"""`hippo bench sweep`: the grid (grid.py), its run into recorded-output rows (runner.py), and the benchmarks' loaders (datasets/)."""
