"""The production service for an exported winner (`workbench serve`), its monitor and the harvest of
production questions into a new eval set.

    run.py       load the export, open the deployment's experiment, serve it with uvicorn (graceful SIGTERM)
    app.py       the FastAPI routes: OpenAI chat, /answer, /feedback, /healthz, /metrics; token, size limits
    requests.py  what each route accepts, checked before any work
    service.py   one question through the exported pipeline, with the sweep's executor; traced off the path
    metrics.py   Prometheus metrics;  baseline.py  the sweep's retrieval top scores (drift)
    monitor.py   the deployment's traces read back as numbers;  harvest.py  production questions → eval JSONL

The MLflow side (traces, feedback, reading them back) is `workbench.tracking.serve_log`.
"""
