"""Model-quality analyses computed from an evaluated run: performance by property,
property importance and recommendations. Pure functions over arrays and tables."""
