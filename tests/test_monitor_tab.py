"""The Workbench's Monitor tab over a real MLflow store holding a few served requests, written by the service's
own trace writer (`ServeLog`, in process): the deployment is offered, the figure counts the requests and the
summary gives the share of negative feedback."""

from __future__ import annotations

import queue
import time

from workbench.tracking.serve_log import ServedRequest, ServeLog, UserFeedback
from workbench.ui.monitor_tab import MonitorTab

from test_ui import text

DEPLOYMENT = "t-monitor"


def served(uri: str, n: int, ratings: list[str]) -> list[str]:
    """`n` answered requests traced in `uri`, the first len(ratings) of them rated."""
    log = ServeLog(uri, DEPLOYMENT, {"workbench.deployment": DEPLOYMENT, "workbench.config_hash": "c0ffee"})
    inbox: queue.Queue = queue.Queue()
    ids = [f"ans_{i:032x}" for i in range(n)]
    for i, answer_id in enumerate(ids):
        context = {"chunk_id": "c1", "doc_id": "Super_Bowl_50/0", "text": "Denver won.", "score": 2.0 + i, "rank": 1}
        inbox.put(("request", ServedRequest(
            answer_id=answer_id, route="answer", question=f"Who won, take {i}?", started_ns=time.time_ns(),
            total_s=0.2, retrieve_s=0.01, generate_s=0.15, answer="Denver", contexts=[context],
            messages=[{"role": "user", "content": "Who won?"}], prompt_tokens=40, completion_tokens=3,
            cost_usd=1e-5, model="m")))
    batch = [("feedback", UserFeedback(answer_id=a, rating=r)) for a, r in zip(ids, ratings)]
    inbox.put(("batch", batch))  # as the service hands them over
    inbox.put(("stop", None))
    log.run(inbox)
    assert log.counts() == {"written": n, "lost": 0, "feedback_written": len(ratings), "feedback_lost": 0}
    return ids


def test_monitor_tab_shows_the_deployments_requests_and_negative_feedback(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    served(uri, 5, ["down", "up", "up", "down"])
    tab = MonitorTab(uri)
    assert tab.monitor is None and tab.deployment.options == ()  # nothing read until Refresh
    tab.refresh_button.click()
    assert tab.deployment.options == (DEPLOYMENT,) and tab.deployment.value == DEPLOYMENT
    assert text(tab.message) == ""
    fig = tab.figure.figure
    bars = next(t for t in fig.data if t.name == "requests")
    assert sum(bars.y) == 5
    negative = [v for v in next(t for t in fig.data if t.name == "negative share").y if v == v]
    assert negative and sum(negative) / len(negative) == 0.5
    assert tab.monitor.summary["negative_share"] == 0.5 and tab.monitor.summary["rated"] == 4
    assert "5 requests" in text(tab.summary) and "negative feedback 50% of 4 rated" in text(tab.summary)

    tab.deployment.value = "no-such-deployment"
    tab.refresh()
    assert "no-such-deployment" in text(tab.message) and "wb-error" in tab.message.value
