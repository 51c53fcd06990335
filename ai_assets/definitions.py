"""The one Definitions object of the ai_assets code location: every area of `ai_assets.defs`
merged, with the resources from the environment."""

import importlib
import pkgutil
from collections.abc import Iterator, Mapping

from dagster import Definitions, in_process_executor

import ai_assets.defs
from ai_assets.resources import build_resources


def area_definitions() -> Iterator[Definitions]:
    """The `defs` of every package under `ai_assets/defs`, in name order."""
    for area in sorted(m.name for m in pkgutil.iter_modules(ai_assets.defs.__path__) if m.ispkg):
        yield importlib.import_module(f"{ai_assets.defs.__name__}.{area}").defs


def build_defs(resources: Mapping[str, object]) -> Definitions:
    """All definitions with the given resources; tests pass their own, `defs` uses the env's."""
    return Definitions.merge(
        *area_definitions(),
        Definitions(
            resources=dict(resources),
            # Steps are short pandas work: a process per step (the multiprocess default) costs
            # seconds of imports each. Parallelism comes from one run per partition instead.
            executor=in_process_executor,
        ),
    )


defs = build_defs(build_resources())
