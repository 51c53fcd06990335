"""Layer 5 wiring: reviewers' decisions applied by a run a sensor starts, overdue items raised
to the senior queue, and retraining once enough reviewed labels have arrived."""

from dagster import Definitions

defs = Definitions()
