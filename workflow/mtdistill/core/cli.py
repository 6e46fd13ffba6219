"""What every step's `main()` shares: logging into the rule's log, the job's environment, seeding,
and turning bad input into a one-line error."""

from __future__ import annotations

import logging
import os
import random
import socket
import sys

import numpy as np

from .io import InputError


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging() -> logging.Logger:
    """Log to stderr, which each rule redirects into its `log:` file."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    return logging.getLogger("mtdistill")


def job_environment() -> str:
    """Where this step runs: host, cluster job and the GPUs it was given (for its log)."""
    slurm = os.environ.get("SLURM_JOB_ID")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return " ".join([f"host {socket.gethostname()}", f"slurm job {slurm}" if slurm else "no cluster job",
                     f"CUDA_VISIBLE_DEVICES={gpus}" if gpus is not None else "CUDA_VISIBLE_DEVICES unset"])


def run_main(func, args) -> int:
    """Run a step; turn InputError into a one-line message and exit status 2."""
    log = setup_logging()
    log.info("%s", job_environment())
    try:
        func(args)
    except InputError as err:
        log.error("%s", err)
        print(f"mtdistill: error: {err}", file=sys.stderr)
        return 2
    return 0
