#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the cluster tests and for trying
# `f2f-cam train --slurm` without a cluster (Debian/Ubuntu: apt install slurmctld
# slurmd slurm-client munge). Everything lives in one folder; nothing in /etc changes.
#
#   scripts/slurm_local.sh start DIR   # munged, slurmctld, slurmd; waits for the node
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, squeue, scancel, f2f-cam train --slurm
#   scripts/slurm_local.sh stop DIR
#
# Needs root (slurmd starts jobs as their users). The node has 2 CPUs (F2F_SLURM_CPUS)
# whatever the machine has. Exits non-zero with the reason when something cannot start.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then echo "usage: $0 start|stop DIR" >&2; exit 2; fi
cpus=${F2F_SLURM_CPUS:-2}
ctld_port=${F2F_SLURM_CTLD_PORT:-6817}
slurmd_port=${F2F_SLURM_SLURMD_PORT:-6818}

die() { echo "slurm_local: $*" >&2; exit 1; }

stop() {
    munge=$(cat "$dir/munge.path" 2>/dev/null || true)
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" ${munge:+"$munge/munged.pid"}; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    done
    case "$munge" in /tmp/f2f-munge.*) rm -rf "$munge" "$dir/munge.path";; esac
}

start() {
    [ "$(id -u)" = 0 ] || die "needs root (slurmd starts jobs as their users)"
    for exe in munged slurmctld slurmd sinfo; do
        command -v "$exe" >/dev/null || die "$exe is not installed (apt install slurmctld slurmd slurm-client munge)"
    done
    mkdir -p "$dir/state" "$dir/spool"
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)

    # munge: a private daemon, socket and key, in a folder of its own that the munge user
    # can reach (DIR may be private to root, as pytest's temporary folders are).
    munge=$(mktemp -d /tmp/f2f-munge.XXXXXX)
    echo "$munge" > "$dir/munge.path"
    chown munge:munge "$munge"
    chmod 0755 "$munge"  # the socket is for everyone; the key inside stays 0400 munge
    dd if=/dev/urandom of="$munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$munge/munge.key"
    chmod 0400 "$munge/munge.key"
    runuser -u munge -- munged --socket="$munge/munge.socket" --key-file="$munge/munge.key" \
        --pid-file="$munge/munged.pid" --log-file="$munge/munged.log" \
        --seed-file="$munge/munged.seed" || die "munged did not start: $(tail -n1 "$munge/munged.log" 2>/dev/null)"

    : > "$dir/plugstack.conf"
    cat > "$dir/slurm.conf" <<EOF
# One node, $cpus CPUs, written by scripts/slurm_local.sh
ClusterName=f2f
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
# cred_expire: also how long Slurm holds a requeued job before it may start again (default 120 s)
AuthInfo=socket=$munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -n1 "$dir/slurmctld.log" 2>/dev/null)"
    slurmd -f "$SLURM_CONF" || die "slurmd did not start: $(tail -n1 "$dir/slurmd.log" 2>/dev/null)"
    for _ in $(seq 100); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -n1 || true)
        case "$state" in idle*|mixed*|alloc*) echo "slurm_local: node $host up ($cpus CPUs); SLURM_CONF=$SLURM_CONF"; return 0;; esac
        sleep 0.2
    done
    die "the node did not come up (state '${state:-none}'); see $dir/slurmctld.log and $dir/slurmd.log"
}

case "$cmd" in
    start) stop; start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
