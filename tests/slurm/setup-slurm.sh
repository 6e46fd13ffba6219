#!/usr/bin/env bash
# Start a throw-away single-node Slurm (Debian slurm-wlm 22.05 + munge) for the integration test.
# Needs root and apt-get; the recipe and its pitfalls: shared/research/slurm-single-node.md.
#   - no slurmdbd: `sacct` cannot work, so snakemake must be run with --slurm-status-command squeue;
#   - one fake GPU (gres gpu:1 backed by /dev/null): Slurm grants it and sets CUDA_VISIBLE_DEVICES;
#   - finished jobs stay visible to `squeue --states=all` for MinJobAge seconds (the test's job list)
#     and every job is appended to $SLURM_CI_DIR/log/jobcomp.txt.
# The PID of every daemon goes to $SLURM_CI_DIR/pids/*.pid; teardown-slurm.sh stops exactly those.
set -euo pipefail
STATE=${SLURM_CI_DIR:?set SLURM_CI_DIR to a scratch folder}
NODE=$(hostname -s)
CPUS=$(nproc)
t0=$(date +%s)
log() { echo "[setup-slurm +$(($(date +%s) - t0))s] $*"; }

pkgs="slurmctld slurmd slurm-client munge"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "apt-get install$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
log "slurm $(dpkg-query -W -f='${Version}' slurmctld)"

# one cluster at a time (fixed ports); old job state would be replayed, so start from nothing
for f in "$STATE"/pids/*.pid; do
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && { echo "already running: $f" >&2; exit 1; }
done
if ps -C slurmctld,slurmd -o stat= | grep -qv '^Z'; then  # killed daemons can linger as zombies
  echo "another slurmctld/slurmd is running on this machine" >&2; exit 1
fi
rm -rf "$STATE"
mkdir -p "$STATE"/{pids,log,spool/ctld,spool/d}

[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
# -F keeps munged in the foreground and setpriv does not fork: $! is the daemon itself
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$STATE/log/munged.out" 2>&1 &
echo $! >"$STATE/pids/munged.pid"
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null
log "munged up"

MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$((MEM * 8 / 10))
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pidfile
SlurmdPidFile=$STATE/slurmd.pidfile
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/linux
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
cat >/etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null
CONF

slurmctld -D -f /etc/slurm/slurm.conf >"$STATE/log/slurmctld.out" 2>&1 &
echo $! >"$STATE/pids/slurmctld.pid"
slurmd -D -f /etc/slurm/slurm.conf >"$STATE/log/slurmd.out" 2>&1 &
echo $! >"$STATE/pids/slurmd.pid"
for _ in $(seq 150); do
  kill -0 "$(cat "$STATE/pids/slurmctld.pid")" 2>/dev/null || { tail -5 "$STATE/log/slurmctld.log"; exit 1; }
  timeout 5 sinfo -h -o '%t' 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
sinfo -h -o '%t' | grep -qx idle || { sinfo; tail -20 "$STATE"/log/slurm*.log; exit 1; }
log "slurm up: $(sinfo -h -o '%P %a %D %t %G %c %m')"
