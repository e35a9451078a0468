"""Imported by the MLflow helper in a test (`__preload__`): its exit then takes a second, so whether its parent
waited for it is visible."""

import atexit
import time

atexit.register(time.sleep, 1.0)
