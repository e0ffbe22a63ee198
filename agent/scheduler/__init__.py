"""The scheduler source: a batch scheduler's nodes and jobs as the CAS figures.

``snapshot`` holds what every adapter returns, ``slurm``/``pbs``/``lsf`` turn
their commands' output into one, ``figures`` turns a snapshot into series, and
``collector`` runs the commands for the agent. The agent imports this package
only when its TOML has a ``[scheduler]`` table.
"""
