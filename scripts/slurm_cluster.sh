#!/usr/bin/env bash
# A one-node Slurm cluster with accounting on this machine, from Debian's packages, for running sweeps through
# `hydra/launcher=slurm` against a real scheduler. Needs root; it writes /etc/slurm/slurm.conf and slurmdbd.conf.
#
#   scripts/slurm_cluster.sh install   # apt-get install slurm-wlm munge slurmdbd mariadb-server
#   scripts/slurm_cluster.sh start     # munged, mariadbd, slurmdbd, slurmctld, slurmd; waits for an idle node
#   scripts/slurm_cluster.sh stop      # the same daemons, in reverse order, by their pid files
#   scripts/slurm_cluster.sh status    # which daemons run, and the node's state
#
# The node has every core of the machine and its memory less 2 GiB, in one partition `debug`. Accounting
# (slurmdbd on MariaDB) is what lets submitit see a cancelled job as cancelled: without it, a job cancelled with
# scancel leaves the sweep waiting for ever. EnforcePartLimits=ALL refuses a job asking for more than the node
# has at submission, where it would otherwise pend for ever. Logs are under /var/log/slurm and /var/log/mysql.
set -euo pipefail

HOST=$(hostname -s)
CONF=/etc/slurm
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # in start order
declare -A PIDFILE=([munged]=/run/munge/munged.pid [mariadbd]=/run/mysqld/mysqld.pid
                    [slurmdbd]=/run/slurm/slurmdbd.pid [slurmctld]=/run/slurm/slurmctld.pid
                    [slurmd]=/run/slurm/slurmd.pid)

say() { echo "slurm_cluster: $*" >&2; }
die() { say "$*"; exit 1; }

running() {  # running DAEMON: its pid file names a live process
    local file=${PIDFILE[$1]}
    [[ -s $file ]] && kill -0 "$(cat "$file")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds, or fail naming WHAT
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$what did not come up within $seconds s (logs: /var/log/slurm, /var/log/mysql)"
}

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
    say "installed: $(slurmctld -V)"
}

write_config() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
    mkdir -p "$CONF"
    cat > "$CONF/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
EnforcePartLimits=ALL
MailProg=/bin/true
KillWait=10
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    (umask 077; cat > "$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=${PIDFILE[slurmdbd]}
LogFile=/var/log/slurm/slurmdbd.log
EOF
    )
}

start_daemon() {  # start_daemon NAME: start it unless it runs already
    local name=$1
    if running "$name"; then
        say "$name already running (pid $(cat "${PIDFILE[$name]}"))"
        return
    fi
    case $name in
        munged) runuser -u munge -- /usr/sbin/munged ;;
        mariadbd)
            setsid /usr/sbin/mariadbd --user=mysql --pid-file="${PIDFILE[mariadbd]}" \
                </dev/null >>/var/log/mysql/mariadbd.log 2>&1 &
            wait_for 30 mariadbd test -S /run/mysqld/mysqld.sock
            mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
                        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
                        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ;;
        slurmdbd) /usr/sbin/slurmdbd; wait_for 30 slurmdbd sacctmgr -n list cluster ;;
        slurmctld) /usr/sbin/slurmctld; wait_for 30 slurmctld scontrol ping ;;
        slurmd) /usr/sbin/slurmd ;;
    esac
    wait_for 30 "$name's pid file" running "$name"
}

node_idle() { [[ $(sinfo -h -n "$HOST" -o %T) == idle ]]; }

start() {
    command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install' first"
    install -d -o munge -g munge /run/munge
    install -d -o mysql -g mysql /run/mysqld
    install -d -o mysql -g adm /var/log/mysql  # without it MariaDB fails without a word
    install -d /run/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    write_config
    for name in "${DAEMONS[@]}"; do
        start_daemon "$name"
    done
    wait_for 30 "node $HOST (idle)" node_idle
    say "up: node $HOST, $(nproc) CPUs, partition debug"
}

stop() {
    local name pid
    for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
        name=${DAEMONS[i]}
        running "$name" || continue
        pid=$(cat "${PIDFILE[$name]}")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop in 10 s: killed"
            kill -9 "$pid"
        fi
    done
    say "stopped"
}

status() {
    for name in "${DAEMONS[@]}"; do
        if running "$name"; then echo "$name: running (pid $(cat "${PIDFILE[$name]}"))"; else echo "$name: stopped"; fi
    done
    if running slurmctld; then sinfo; fi
}

case ${1:-} in
    install) install_packages ;;
    start | stop | status) "$1" ;;
    *) die "usage: $0 install|start|stop|status" ;;
esac
