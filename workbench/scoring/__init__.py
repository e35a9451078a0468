"""Scoring: the typed cell (one variant × question), the metric catalogue, per-cell metrics, the LLM judge and aggregation. Human labels and judge calibration belong here."""
