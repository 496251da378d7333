"""SMT's block inspector: gradient collection, analysis, cache and export."""
