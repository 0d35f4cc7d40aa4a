#!/usr/bin/env bash
# Stops the throw-away SLURM started by slurm/local-cluster.sh: cancels every job first (job
# steps outlive slurmd), then stops slurmd, slurmctld and munged, and removes its config files.
set -uo pipefail

STATE=${CONFFLOW_SLURM_DIR:-/tmp/confflow-slurm}
CONF_DIR=/etc/slurm
MARK="# confflow throw-away single-node SLURM (slurm/local-cluster.sh)"

stop_pid() {  # stop_pid PIDFILE: TERM, wait up to 10 s, then KILL
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

if [ -f "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null; then
    scancel --full --signal=KILL --state=RUNNING --partition=debug 2>/dev/null || true
    scancel --partition=debug 2>/dev/null || true
    for _ in $(seq 100); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi
stop_pid "$STATE/slurmd.pid"
stop_pid "$STATE/slurmctld.pid"
stop_pid "$STATE/munged.pid"
for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
    if [ -f "$f" ] && grep -qF "$MARK" "$f"; then rm -f "$f"; fi
done
rm -rf "$STATE"
echo "local SLURM stopped"
