#!/usr/bin/env bash
# Stop the daemons setup-slurm.sh started, by their recorded PIDs, newest first.
STATE=${SLURM_CI_DIR:?set SLURM_CI_DIR to a scratch folder}
for daemon in slurmd slurmctld munged; do
  f="$STATE/pids/$daemon.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
done
