#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying slurm/train.sbatch and for tests/test_slurm.py.
#
#   sudo slurm/local_cluster.sh          # install (apt-get), configure, start; wait until the node is idle
#   sudo slurm/local_cluster.sh status   # show what runs (daemons, sinfo, squeue)
#   sudo slurm/local_cluster.sh stop     # stop slurmd, slurmctld and munged (packages and config stay)
#
# Idempotent: a second run changes nothing and only checks that the node is up. It rewrites
# /etc/slurm/slurm.conf (and restarts the daemons) only when the generated config differs.
#
# Choices, for a container or VM without systemd as PID 1 (daemons are then started directly, and with
# systemctl where systemd runs):
# - ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroup setup needed (cgroup v1/v2,
#   delegated or not, all work). Signals (scancel --signal, --signal=USR1@N) reach every task of a step
#   through the process tree.
# - SelectType=select/cons_tres with CR_Core: jobs share the node core by core (two 1-CPU jobs at once).
# - JobRequeue=1 and `scontrol requeue` allowed; ReturnToService=2 so a restarted slurmd rejoins.
# - AuthInfo=cred_expire=10 (CRED_EXPIRE): a requeued job waits cred_expire+1 s before it may start
#   again (Slurm's default of 120 s would make the requeue test wait two minutes).
# - SchedulerParameters sched_interval=2,bf_interval=2: a requeued job whose begin time has passed is
#   started within ~2 s (the default periodic pass is every 60 s, backfill every 30 s).
# - No accounting daemon (slurmdbd): `sacct` is unavailable; finished jobs stay visible to
#   `scontrol show job` for MinJobAge=600 s and are appended to /var/log/slurm/jobcomp.log.
#
# Environment: PARTITION (default debug), CRED_EXPIRE (default 10, Slurm's minimum is 5),
# WAIT_S (how long to wait for the node, default 90).
set -euo pipefail

PARTITION=${PARTITION:-debug}
CRED_EXPIRE=${CRED_EXPIRE:-10}
WAIT_S=${WAIT_S:-90}
CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm/slurmctld
SPOOLDIR=/var/lib/slurm/slurmd

say() { echo "[local_cluster] $*"; }
die() {
    echo "[local_cluster] error: $*" >&2
    exit 1
}

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    SYSTEMD=1
else
    SYSTEMD=0
fi

alive() { # alive PIDFILE: the process named in PIDFILE runs
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() { # stop_pidfile NAME PIDFILE
    if alive "$2"; then
        local pid
        pid=$(cat "$2")
        say "stopping $1 (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$2"
}

stop_all() {
    if [ "$SYSTEMD" = 1 ]; then
        systemctl stop slurmd slurmctld munge || true
    else
        stop_pidfile slurmd /run/slurmd.pid
        stop_pidfile slurmctld /run/slurmctld.pid
        stop_pidfile munged /run/munge/munged.pid
    fi
}

status() {
    for d in munged slurmctld slurmd; do
        if pgrep -x "$d" >/dev/null; then say "$d: running (pid $(pgrep -x "$d" | tr '\n' ' '))"; else say "$d: not running"; fi
    done
    if command -v sinfo >/dev/null; then
        sinfo -N -o "%N %P %t %c %O" || true
        squeue || true
    fi
}

case "${1:-start}" in
start) ;;
status)
    status
    exit 0
    ;;
stop)
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0 stop)"
    stop_all
    say "stopped"
    exit 0
    ;;
*) die "usage: $0 [start|status|stop]" ;;
esac

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): it installs packages and starts system daemons"

# --- 1. packages ------------------------------------------------------------------------------------
missing=()
for cmd in munged slurmctld slurmd sbatch scontrol; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get: install slurm-wlm and munge by hand"
    say "installing slurm-wlm and munge with apt-get (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d in containers refuses service starts during install; that is fine, we start below
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/tmp/local_cluster_apt.log 2>&1 ||
        {
            tail -20 /tmp/local_cluster_apt.log >&2
            die "apt-get install failed (full log: /tmp/local_cluster_apt.log)"
        }
else
    say "slurm $(sinfo --version 2>/dev/null | cut -d' ' -f2) and munge are installed"
fi
id slurm >/dev/null 2>&1 || die "user 'slurm' missing (the slurm-wlm package creates it)"
id munge >/dev/null 2>&1 || die "user 'munge' missing (the munge package creates it)"

# --- 2. munge ---------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating the munge key /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile /etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged is running"
else
    say "starting munged"
    if [ "$SYSTEMD" = 1 ]; then
        systemctl enable --now munge
    else
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged
    fi
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.2
    done
    munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
fi

# --- 3. slurm.conf ----------------------------------------------------------------------------------
HOST=$(hostname -s)
# The hardware exactly as slurmd sees it (CPUs, sockets, cores, threads, memory): a node whose config
# claims more than it has is drained as "invalid".
NODE_HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
NCPUS=$(echo "$NODE_HW" | sed -E 's/.*CPUs=([0-9]+).*/\1/')
install -d -o slurm -g slurm -m 0755 "$LOGDIR" "$STATEDIR" /etc/slurm
install -d -o root -g root -m 0755 "$SPOOLDIR"

NEW_CONF=$(mktemp)
trap 'rm -f "$NEW_CONF"' EXIT
cat >"$NEW_CONF" <<EOF
# Written by slurm/local_cluster.sh: a one-node cluster on $HOST. Rewritten when the script changes it.
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=$CRED_EXPIRE
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SlurmdParameters=config_overrides
StateSaveLocation=$STATEDIR
SlurmdSpoolDir=$SPOOLDIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

CHANGED=0
if [ -f "$CONF" ] && cmp -s "$NEW_CONF" "$CONF"; then
    say "$CONF is up to date (node $HOST, $NCPUS CPUs, partition $PARTITION)"
else
    [ -f "$CONF" ] && cp "$CONF" "$CONF.bak" && say "previous config saved as $CONF.bak"
    install -m 0644 "$NEW_CONF" "$CONF"
    say "wrote $CONF (node $HOST, $NCPUS CPUs, partition $PARTITION)"
    CHANGED=1
fi

# --- 4. daemons -------------------------------------------------------------------------------------
start_daemon() { # start_daemon NAME PIDFILE
    local name=$1 pidfile=$2
    if alive "$pidfile" && [ "$CHANGED" = 0 ]; then
        say "$name is running (pid $(cat "$pidfile"))"
        return
    fi
    if [ "$SYSTEMD" = 1 ]; then
        say "(re)starting $name with systemctl"
        systemctl enable "$name" >/dev/null 2>&1 || true
        systemctl restart "$name"
        return
    fi
    stop_pidfile "$name" "$pidfile"
    say "starting $name (log: $LOGDIR/$name.log)"
    "/usr/sbin/$name" || die "$name did not start; see $LOGDIR/$name.log"
}
start_daemon slurmctld /run/slurmctld.pid
for _ in $(seq 50); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
scontrol ping | grep -q UP || die "slurmctld does not answer; see $LOGDIR/slurmctld.log"
start_daemon slurmd /run/slurmd.pid

# --- 5. wait for the node ---------------------------------------------------------------------------
say "waiting for node $HOST to be idle (up to ${WAIT_S}s)"
resumed=0
state=""
for i in $(seq "$WAIT_S"); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 | tr -d '~#!%$@^-')
    case "$state" in
    idle | mix | alloc | comp) break ;;
    down | drain | drng | drained | fail | maint)
        # e.g. "Node unexpectedly rebooted" after a restart, or "Not responding" left from a previous boot
        if [ "$resumed" = 0 ] && [ "$i" -gt 2 ]; then
            say "node is $state ($(sinfo -h -N -n "$HOST" -o %E)); resuming it"
            scontrol update NodeName="$HOST" State=RESUME || true
            resumed=1
        fi
        ;;
    esac
    sleep 1
done
case "$state" in
idle | mix | alloc | comp) ;;
*)
    sinfo -N -l >&2 || true
    tail -20 "$LOGDIR/slurmd.log" >&2 || true
    die "node $HOST is '${state:-unknown}' after ${WAIT_S}s; see $LOGDIR/slurmd.log and $LOGDIR/slurmctld.log"
    ;;
esac
[ "$(scontrol show config | awk '/^JobRequeue/ {print $3}')" = 1 ] || die "JobRequeue is not 1"
sinfo -N -o "%N %P %t %c"
say "ready: node $HOST is $state in partition $PARTITION; submit with: sbatch -J NAME --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1 slurm/train.sbatch --config configs/toy/ring.yaml"
