"""itilflow: ITIL process automation on Prefect 3."""
