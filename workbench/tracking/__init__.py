"""Tracking: the Tracker protocol and its MLflow, helper-process and null implementations. Every mlflow import of the package lives here."""
