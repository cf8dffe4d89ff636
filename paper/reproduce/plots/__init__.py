"""The paper's figures and tables (`hippo figures`, paper/reproduce/figures.py): one module per figure, each a
`build(job: FigureJob) -> Outcome` over the job's resumable sweeps and measurements (paper/reproduce/plots/job.py)."""
