#!/usr/bin/env bash
# Snakemake runs this once after creating the COMET conda env: add mtdistill itself, without its
# dependencies, which are the main environment's (MTDISTILL_HOME: the checkout; default the current
# directory, the workflow's root).
set -euo pipefail
pip install --no-deps -e "${MTDISTILL_HOME:-.}"
