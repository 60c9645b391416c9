#!/usr/bin/env bash
# RabbitMQ for AiiDA's core.rabbitmq broker: installed if missing, configured as AiiDA asks, started, waited for.
#
#   bash scripts/rabbitmq.sh          # idempotent; about a second when RabbitMQ already runs with this configuration
#
# Run as root on Debian (apt-get install rabbitmq-server when missing). No systemd is needed: the server is started
# with `rabbitmq-server -detached` (a container has no init), then the script waits for `rabbitmqctl await_startup`.
#
# AiiDA's daemon workers hold a process's task un-acknowledged for as long as the process runs. RabbitMQ >= 3.8.15
# closes the channel of a consumer that holds a task longer than `consumer_timeout` (30 min by default), which
# requeues every task of that worker: a long DFT relaxation would run twice or fail. aiida-core's documentation
# (Troubleshooting, "RabbitMQ incompatibility") asks to raise it in /etc/rabbitmq/rabbitmq.conf; we set the value
# it gives, 10,000 hours, and check that the running server uses it (restarting it once if not).
set -euo pipefail
CONF=/etc/rabbitmq/rabbitmq.conf
TIMEOUT_MS=36000000000 # 10,000 hours in milliseconds, as in aiida-core's documentation

if ! command -v rabbitmq-server >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null
fi

# two runs at once (two test sessions) must not start two servers
exec 9>/tmp/physgen-rabbitmq.lock
flock -w 300 9

mkdir -p "$(dirname "${CONF}")"
touch "${CONF}"
if grep -qE '^\s*consumer_timeout\s*=' "${CONF}"; then
    sed -i -E "s/^\s*consumer_timeout\s*=.*/consumer_timeout = ${TIMEOUT_MS}/" "${CONF}"
else
    printf '# aiida-physgen (scripts/rabbitmq.sh): AiiDA daemon workers hold tasks for as long as a process runs\nconsumer_timeout = %s\n' \
        "${TIMEOUT_MS}" >>"${CONF}"
fi

# every RabbitMQ command without the lock's file descriptor: the server (and epmd, which rabbitmqctl may start)
# would otherwise hold the lock for ever
ctl() { rabbitmqctl "$@" 9>&-; }
# one rabbitmqctl call (about a second each): fails when the node is down, else prints {ok,Milliseconds}
timeout_in_use() { ctl -q eval 'application:get_env(rabbit, consumer_timeout).' 2>/dev/null | tr -d ' \n'; }
start() {
    # through the Debian wrapper, which runs the server as the rabbitmq user
    rabbitmq-server -detached >/dev/null 2>&1 9>&- || service rabbitmq-server start >/dev/null 2>&1 9>&- || true
    local deadline=$((SECONDS + 120))
    until ctl -q await_startup --timeout 10 >/dev/null 2>&1; do
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            echo "RabbitMQ did not start within 120 s; its log:" >&2
            tail -n 40 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
            exit 1
        fi
        sleep 1
    done
}

in_use="$(timeout_in_use || true)"
if [ -z "${in_use}" ]; then
    start
    in_use="$(timeout_in_use || true)"
fi
if [ "${in_use}" != "{ok,${TIMEOUT_MS}}" ]; then
    # started before the setting was written: restart once to read it
    ctl -q stop >/dev/null 2>&1 || true
    start
    if [ "$(timeout_in_use)" != "{ok,${TIMEOUT_MS}}" ]; then
        echo "RabbitMQ runs with consumer_timeout $(timeout_in_use), not ${TIMEOUT_MS} from ${CONF}" >&2
        exit 1
    fi
fi
echo "RabbitMQ is up on port 5672 (consumer_timeout ${TIMEOUT_MS} ms)"
