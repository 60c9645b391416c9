#!/usr/bin/env bash
# A one-node SLURM cluster and an SSH server on this machine, for tests/cluster/ (run as root):
#
#   bash scripts/localhost_cluster.sh
#
# * munge (SLURM's authentication) with a key of its own, munged started;
# * slurm.conf for one node (this host, all its CPUs) in a partition `debug`; slurmctld and slurmd started;
# * sshd on port 22 and a key pair ~/.ssh/id_physgen_cluster (PHYSGEN_CLUSTER_KEY) that logs in to root@localhost,
#   localhost in ~/.ssh/known_hosts.
#
# Needs no systemd: every service is started by hand as a daemon. Idempotent: what is set up and running is left
# alone, so a second call takes about a second. Ends with a one-line summary; exits non-zero naming the service
# that failed. Logs: /var/log/slurm/, /var/log/munge/, /var/log/physgen-cluster/ (start-up output of the daemons).
set -euo pipefail
export LC_ALL=C  # fixed formats: decimal point of $EPOCHREALTIME, sort order of the known_hosts comparison

KEY=${PHYSGEN_CLUSTER_KEY:-$HOME/.ssh/id_physgen_cluster}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/physgen-cluster
START=$EPOCHREALTIME
STARTED=()

fail() {  # fail SERVICE MESSAGE [LOG...]: say what failed, show the end of its logs, exit 1
    local service=$1 message=$2
    shift 2
    echo "localhost_cluster: FAILED: $service: $message" >&2
    local log
    for log in "$@"; do
        if [ -s "$log" ]; then
            echo "--- last lines of $log:" >&2
            tail -n 20 "$log" >&2
        fi
    done
    exit 1
}
trap 'fail "${STEP:-set-up}" "command failed at line $LINENO: $BASH_COMMAND"' ERR

wait_for() {  # wait_for SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS
    local deadline
    deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

daemon() {  # daemon LOGNAME COMMAND...: start a daemon detached from our stdin/stdout/stderr
    # a daemon keeping our stdout open would make a caller that captures it (pytest's subprocess.run) wait forever
    local log=$LOG_DIR/$1.log
    shift
    "$@" </dev/null >>"$log" 2>&1 || true
}

# ------------------------------------------------------------------------------------------------- packages
STEP=packages
have_binaries() {
    [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sinfo sbatch scontrol >/dev/null &&
        [ -x /usr/sbin/munged ] && command -v mungekey munge unmunge >/dev/null &&
        [ -x /usr/sbin/sshd ] && command -v ssh ssh-keygen ssh-keyscan >/dev/null
}
if ! have_binaries; then
    [ "$(id -u)" = 0 ] || fail packages "slurm-wlm, munge and openssh-server are missing and installing them needs root"
    # scripts/setup.sh installs them too; this is the fallback. Package lists first only when they are missing.
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge openssh-server >"$LOG_DIR/apt.log" 2>&1; }
    mkdir -p "$LOG_DIR"
    apt_install || { apt-get update -qq >>"$LOG_DIR/apt.log" 2>&1 && apt_install; } ||
        fail packages "apt-get install slurm-wlm munge openssh-server failed" "$LOG_DIR/apt.log"
    have_binaries || fail packages "installed, but slurmctld/slurmd/munged/sshd are still missing"
fi
mkdir -p "$LOG_DIR"

# ------------------------------------------------------------------------------------------------- munge
STEP=munge
id munge >/dev/null 2>&1 || fail munge "no user 'munge' (the munge package creates it)"
# munged refuses to start when its key directory or key can be read or written by others; /run is a fresh tmpfs
# after a reboot and without systemd-tmpfiles nobody else creates /run/munge (its socket) there
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
munge_works() { { munge -n </dev/null | unmunge; } >/dev/null 2>&1; }
if ! munge_works; then
    # as the munge user, as Debian's own init script does; --force: a socket left by a killed munged is taken over
    daemon munged runuser -u munge -- /usr/sbin/munged --force
    wait_for 10 munge_works || fail munge "munged did not start (munge -n | unmunge fails)" \
        "$LOG_DIR/munged.log" /var/log/munge/munged.log
    STARTED+=(munged)
fi

# ------------------------------------------------------------------------------------------------- slurm
STEP=slurm
HOST=$(hostname -s)
# `nproc` alone obeys OMP_NUM_THREADS (1 in the tests): unset it to count this machine's CPUs (affinity still counts)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$((MEM_MB * 9 / 10))  # below the real size: a node reporting less memory than configured is drained
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chmod 0755 /var/spool/slurmctld /var/spool/slurmd
NEW_CONF=$(cat <<EOF
# Written by scripts/localhost_cluster.sh (aiida-physgen tests): one node, this host. Rewritten when it changes.
ClusterName=physgen
# the address is given so that nothing depends on the host name resolving (it may not in a container)
SlurmctldHost=$HOST(127.0.0.1)
# both daemons as root: no 'slurm' user and no ownership of the state/spool/log directories to get right
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# slurmd still probes the PMIx plugin at start and logs "can not load PMIx library": harmless
MpiDefault=none
# no cgroups: the cgroup plugins need a cgroup tree slurmd may write to (v1 controllers or a delegated v2
# subtree), which a container without systemd often lacks, and slurmd then does not start; the test node must
# not depend on it. Processes are tracked through /proc instead, tasks are not bound to CPUs, memory not capped
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: sacct has nothing to say (AiiDA then logs a warning and parses the scheduler's stderr instead)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# cores are the consumable resource: two 1-core jobs run side by side on a 2-core node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# the node is what this file says: a VM reporting another socket/core/thread layout is not drained for it
SlurmdParameters=config_overrides
# a job no node of its partition can ever hold is refused by sbatch, as on most clusters, instead of pending
# for ever (Reason=PartitionConfig)
EnforcePartLimits=ALL
# a node that was down (e.g. its slurmd killed) comes back as soon as its slurmd registers again
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
# jobs are gone from squeue soon after they end, and killed jobs get 5 s between SIGTERM and SIGKILL
MinJobAge=60
KillWait=5
# no mail program is installed; SLURM would log an error for every job end
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
running() {  # running PIDFILE NAME: the process in PIDFILE is alive and is NAME
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && ! gone "$pid" "$2"
}
# gone PID NAME: no process PID named NAME, or only its zombie (a killed daemon's parent is init, which may be
# slow to reap it in a container; a zombie keeps its name in /proc)
gone() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" != "$2" ] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
stop() {  # stop PIDFILE NAME: end the daemon this script started (by its PID), wait until it is gone
    local pid
    running "$1" "$2" || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    wait_for 15 gone "$pid" "$2" || kill -9 "$pid" 2>/dev/null || true
}
if [ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$NEW_CONF" ]; then
    printf '%s\n' "$NEW_CONF" >"$CONF_DIR/slurm.conf"
    chmod 0644 "$CONF_DIR/slurm.conf"
    # another node layout needs both daemons restarted, not just `scontrol reconfigure`
    stop /run/slurmd.pid slurmd
    stop /run/slurmctld.pid slurmctld
fi
# the package's own cgroup.conf (if any) is never read: no cgroup plugin is configured
if ! running /run/slurmctld.pid slurmctld; then
    daemon slurmctld /usr/sbin/slurmctld
    wait_for 20 scontrol ping || fail slurmctld "slurmctld did not answer \`scontrol ping\`" \
        "$LOG_DIR/slurmctld.log" /var/log/slurm/slurmctld.log
    STARTED+=(slurmctld)
fi
if ! running /run/slurmd.pid slurmd; then
    daemon slurmd /usr/sbin/slurmd
    wait_for 10 running /run/slurmd.pid slurmd || fail slurmd "slurmd did not start" \
        "$LOG_DIR/slurmd.log" /var/log/slurm/slurmd.log
    STARTED+=(slurmd)
fi
node_state() { sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1; }
node_ready() { case "$(node_state)" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac; }
resumed=no
deadline=$(($(date +%s) + 30))
until node_ready; do
    state=$(node_state)
    # down or drained without '*' (slurmd responding): a state saved from an earlier run; resume it once
    case "$state" in
        down | drain | drng | fail | failg) if [ $resumed = no ]; then
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            resumed=yes
        fi ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail slurmd "node $HOST is '${state:-unknown}', not idle, after 30 s: \
$(sinfo -h -R -n "$HOST" 2>/dev/null | tr -s ' ')" /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log
    sleep 0.3
done
if [ ${#STARTED[@]} -gt 0 ]; then
    # the whole chain once (munge credentials, slurmctld, slurmd launching a task) when something was just started
    timeout 30 srun -N 1 -n 1 -t 1 true >"$LOG_DIR/srun.log" 2>&1 ||
        fail slurm "a one-task job (srun true) did not run" "$LOG_DIR/srun.log" /var/log/slurm/slurmd.log
fi

# ------------------------------------------------------------------------------------------------- sshd
STEP=sshd
ssh_listening() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/22' 2>/dev/null; }
if ! ssh_listening; then
    ssh-keygen -A >/dev/null  # host keys (the package's postinst makes them, a cleaned image may not have them)
    install -d -m 0755 /run/sshd  # its privilege-separation directory, normally made by systemd on /run
    # UsePAM=no: pam_loginuid cannot be set in many containers and then ends every session at once; key
    # authentication needs no PAM
    daemon sshd /usr/sbin/sshd -o UsePAM=no
    wait_for 10 ssh_listening || fail sshd "sshd is not listening on port 22" "$LOG_DIR/sshd.log"
    STARTED+=(sshd)
fi
install -d -m 0700 "$HOME/.ssh"
if [ ! -s "$KEY" ] || [ ! -s "$KEY.pub" ]; then
    rm -f "$KEY" "$KEY.pub"
    # ed25519 in OpenSSH format: paramiko (AiiDA's core.ssh transport) loads it with PyNaCl and bcrypt
    ssh-keygen -q -t ed25519 -N '' -C "physgen-cluster@$HOST" -f "$KEY"
fi
chmod 0600 "$KEY"
touch "$HOME/.ssh/authorized_keys"
chmod 0600 "$HOME/.ssh/authorized_keys"
grep -qxF "$(cat "$KEY.pub")" "$HOME/.ssh/authorized_keys" || cat "$KEY.pub" >>"$HOME/.ssh/authorized_keys"
# localhost's current host keys in known_hosts (AiiDA's transport rejects unknown hosts); old ones replaced
SCAN=$(ssh-keyscan -T 5 localhost 2>/dev/null | sort) || true
[ -n "$SCAN" ] || fail sshd "ssh-keyscan localhost returned no host key"
touch "$HOME/.ssh/known_hosts"
if [ -n "$(comm -23 <(printf '%s\n' "$SCAN") <(sort "$HOME/.ssh/known_hosts"))" ]; then
    ssh-keygen -R localhost -f "$HOME/.ssh/known_hosts" >/dev/null 2>&1 || true
    printf '%s\n' "$SCAN" >>"$HOME/.ssh/known_hosts"
fi
ssh -i "$KEY" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
    "$(id -un)@localhost" true 2>"$LOG_DIR/ssh-check.log" ||
    fail sshd "ssh -i $KEY $(id -un)@localhost true failed" "$LOG_DIR/ssh-check.log" "$LOG_DIR/sshd.log"

STEP=summary
SUMMARY='ok in %.1f s: slurm node %s (%s CPUs, %s MB) %s in partition debug, munged, sshd on localhost:22, key %s'
printf "localhost_cluster: $SUMMARY; started: %s\n" "$(awk "BEGIN {print $EPOCHREALTIME - $START}")" "$HOST" "$CPUS" \
    "$REAL_MB" "$(node_state)" "$KEY" "${STARTED[*]:-nothing (all were running)}"
