"""`hippo figures`: the figures and tables (plots/), paper/REPRODUCTION.md (reproduction.py) and its verdicts (verdicts.py)."""
