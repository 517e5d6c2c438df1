"""Depth study: plain against residual stacks as they get deeper.

`python -m recipes.depth_study --help` for the command; `study` holds
the runs, `report` the files they produce.
"""
