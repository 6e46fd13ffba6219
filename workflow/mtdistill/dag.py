"""One dry run of the workflow: the jobs Snakemake plans for a Snakefile and a config, as a DAG built
in memory (snakemake.api), for `mtdistill.estimate` and the tests.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from snakemake import api
from snakemake.settings import types as settings
from snakemake.settings.enums import Quietness

SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"


@dataclass
class DryRun:
    """The planned jobs (snakemake Job objects: rule, wildcards, input, output, params, resources,
    shellcmd) in the rules' definition order, the rules and the config they were planned from."""

    jobs: list
    rules: list
    config: dict


@contextlib.contextmanager
def quiet_snakemake():
    """Keep the dry run's job list off the caller's log."""
    logger = logging.getLogger("snakemake.logging")
    propagates, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.propagate = propagates


def dry_run(workdir: Path, configfiles=(), snakefile: Path = SNAKEFILE, cores: int = 1) -> DryRun:
    """The whole DAG for `workdir`'s config/config.yaml with `configfiles` merged over it, as
    `snakemake -n --directory workdir --configfile ...`. Jobs whose outputs exist in `workdir` are
    left out, as Snakemake would; plan in an empty directory for every job."""
    with quiet_snakemake(), api.SnakemakeApi(settings.OutputSettings(quiet={Quietness.ALL})) as sm:
        workflow_api = sm.workflow(
            resource_settings=settings.ResourceSettings(cores=cores),
            config_settings=settings.ConfigSettings(configfiles=[Path(p).resolve() for p in configfiles]),
            snakefile=Path(snakefile),
            workdir=Path(workdir),
        )
        dag_api = workflow_api.dag(settings.DAGSettings(targets=frozenset()))
        dag_api.execute_workflow(executor="dryrun")
        # Snakemake 9 has no public accessor for the planned jobs: read them off its workflow
        workflow = dag_api.workflow_api._workflow
        order = {rule.name: i for i, rule in enumerate(workflow.rules)}  # definition order: the pipeline's
        jobs = sorted(workflow.dag.jobs, key=lambda job: order[job.rule.name])
        return DryRun(jobs=jobs, rules=list(workflow.rules), config=workflow.config)
