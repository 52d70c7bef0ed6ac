#!/usr/bin/env bash
# A real Slurm 22.05 (Debian) with 3 emulated nodes node[1-3] on this one host, for the engine-as-a-Slurm-job
# tests: Debian builds Slurm with multiple-slurmd support, so each node is a slurmd of its own (slurmd -N nodeX,
# ports 17001..), all reachable at 127.0.0.1. No systemd, no cgroups (proctrack/linuxproc), no accounting
# database: job states come from slurmctld, which keeps finished jobs for MinJobAge seconds.
# Daemons' PIDs go to $CI_PIDS.
set -euo pipefail
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
if [ "$(sinfo -h -o '%D' 2>/dev/null | awk '{n += $1} END {print n + 0}')" -ge 3 ]; then
    echo "a Slurm cluster with 3 or more nodes already answers; using it"
    sinfo
    exit 0
fi
S="$CI_STATE/slurm"
mkdir -p "$S/state" "$S/spool"
NODES=3

# munge: the key, then the daemon (it forks; its PID file says which process stays).
if [ ! -s /etc/munge/munge.key ]; then
    mungekey -c -f -k /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
fi
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cat /run/munge/munged.pid >>"$CI_PIDS"
fi
for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.1; done

cat >/etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$(hostname -s)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd-%n.log
# One TmpFS per emulated node: steps spanning several of them must not collide on one /tmp path.
TmpFS=$S/tmp/%n
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
InactiveLimit=0
KillWait=5
MinJobAge=600
Waittime=0
NodeName=node[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# slurmctld and slurmd daemonize; their PID files say which processes to stop.
/usr/sbin/slurmctld
for n in $(seq $NODES); do
    mkdir -p "$S/spool/node$n" "$S/tmp/node$n"
    /usr/sbin/slurmd -N "node$n"
done
for _ in $(seq 120); do
    [ "$(sinfo -h -t idle -o '%D' 2>/dev/null)" = "$NODES" ] && break
    sleep 0.25
done
for f in "$S"/slurmd-node*.pid "$S/slurmctld.pid"; do cat "$f" >>"$CI_PIDS"; done
sinfo
