"""Analysis: sweep results as pandas, statistics (CIs, paired tests, Pareto, best) and plotly figures."""
