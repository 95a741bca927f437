"""Studies built on the curve stages: one module per study, each returning plain results."""
