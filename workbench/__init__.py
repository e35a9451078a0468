"""RAG experimentation workbench: compose RAG variants, run them over an eval set, compare in MLflow.

    import workbench
    results = workbench.run_sweep("experiments/quickstart.yaml")
    results.to_frame()
"""

import os as _os

# Nothing leaves the machine unless the user points a model at a remote endpoint.
for _name, _value in {
    "RAGAS_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Traces are written by the sweep's own logging thread, overlapping the sweep; MLflow's async
    # queue would instead hold the sweep's end for the whole export and drop traces when full.
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
}.items():
    _os.environ.setdefault(_name, _value)

from workbench._version import __version__

__all__ = ["run_sweep", "estimate", "synthesize", "load_sweep", "load_pipeline", "monitor", "load_spec", "SweepSpec",
           "VariantConfig", "WorkbenchError"]


def __getattr__(name: str):
    # Lazy: `import workbench` stays cheap (no MLflow/Chroma import) until the API is used.
    if name == "run_sweep":
        from workbench.runner.sweep import run_sweep

        return run_sweep
    if name == "estimate":
        from workbench.runner.estimate import estimate

        return estimate
    if name == "synthesize":
        from workbench.runner.synth import synthesize

        return synthesize
    if name == "load_pipeline":
        from workbench.handover.export import load_pipeline

        return load_pipeline
    if name == "monitor":
        from workbench.analysis.monitor import monitor

        return monitor
    if name == "load_sweep":
        from workbench.analysis.load import load_sweep

        return load_sweep
    if name in ("load_spec", "SweepSpec", "VariantConfig"):
        from workbench import spec

        return getattr(spec, name)
    if name == "WorkbenchError":
        from workbench.errors import WorkbenchError

        return WorkbenchError
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
