#!/usr/bin/env bash
# Stands up a throw-away single-node SLURM (slurmctld + slurmd + munge) on this machine, for
# tests of the Dask pipelines. Debian 12 / slurm-wlm 22.05; must run as root; installs the
# packages with apt when they are missing. Stop it with slurm/stop-local-cluster.sh.
#
# Environment:
#   CONFFLOW_SLURM_DIR   state directory (default /tmp/confflow-slurm)
#   CONFFLOW_SLURM_GPUS  fake GPUs on the node (default 2; character-device copies of /dev/null)
#
# Exit status: 0 running, 3 cannot install or start SLURM here (not root, no apt), 1 failure.
set -euo pipefail

STATE=${CONFFLOW_SLURM_DIR:-/tmp/confflow-slurm}
GPUS=${CONFFLOW_SLURM_GPUS:-2}
CONF_DIR=/etc/slurm
MARK="# confflow throw-away single-node SLURM (slurm/local-cluster.sh)"

die() { echo "local-cluster.sh: $1" >&2; exit "${2:-1}"; }

[ "$(id -u)" -eq 0 ] || die "needs root (installs packages, starts daemons)" 3

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is missing" 3
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed (no package mirror?)" 3
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
        >/dev/null || die "apt-get install of slurmctld slurmd slurm-client munge failed" 3
fi

if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and is not ours: refusing to replace a real SLURM setup"
fi
if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    die "already running (state in $STATE); stop it with slurm/stop-local-cluster.sh"
fi

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory must stay below what slurmd detects, else the node is drained.
DETECTED=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( DETECTED * 9 / 10 ))

rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/spool" "$CONF_DIR"
GRES_NODE=""
if [ "$GPUS" -gt 0 ]; then
    for i in $(seq 0 $((GPUS - 1))); do mknod "$STATE/gpu$i" c 1 3; done
    GRES_NODE="Gres=gpu:$GPUS"
    echo "$MARK" > "$CONF_DIR/gres.conf"
    echo "NodeName=$HOST Name=gpu File=$STATE/gpu[0-$((GPUS - 1))]" >> "$CONF_DIR/gres.conf"
fi

cat > "$CONF_DIR/slurm.conf" <<CONF
$MARK
ClusterName=confflow
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

# munge: no systemd here, so the daemon is started directly, as the munge user.
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer"
    cp /run/munge/munged.pid "$STATE/munged.pid"  # ours to stop
fi

slurmctld -i || die "slurmctld did not start (see $STATE/slurmctld.log)"
slurmd || die "slurmd did not start (see $STATE/slurmd.log)"

for _ in $(seq 120); do
    STATUS=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case "$STATUS" in
        idle*|mixed*|allocated*) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$STATUS" in
    idle*|mixed*|allocated*) ;;
    *) die "node $HOST is '$STATUS' after 60 s (see $STATE/slurmctld.log, $STATE/slurmd.log)" ;;
esac
echo "local SLURM up: node $HOST, $CPUS CPUs, ${MEM} MB, $GPUS fake GPUs, partition debug"
echo "state in $STATE; stop with slurm/stop-local-cluster.sh"
