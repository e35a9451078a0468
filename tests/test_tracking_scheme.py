"""A tracking URI with a scheme no MLflow store handles fails before any work (a local model start, an index
build), in the sweep's process, without importing MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workbench.errors import TrackingError
from workbench.tracking.store import check_scheme


@pytest.mark.parametrize("uri", ["sqlite:///mlruns/mlflow.db", "http://127.0.0.1:5000", "postgresql+psycopg2://u@h/db",
                                 "file:///tmp/mlruns", "/tmp/mlruns", "databricks"])
def test_every_scheme_mlflow_stores_passes(uri):
    check_scheme(uri)


def test_an_unknown_scheme_fails_naming_the_uri_and_the_fix():
    with pytest.raises(TrackingError, match=r"'nosuchscheme://x'.*no store for the scheme 'nosuchscheme'.*sqlite:///"):
        check_scheme("nosuchscheme://x")


def test_the_check_does_not_import_mlflow():
    code = ("import sys\nfrom workbench.tracking.store import check_scheme\ncheck_scheme('http://h:5000')\n"
            "try:\n    check_scheme('nosuch://x')\nexcept Exception:\n    pass\nprint('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
