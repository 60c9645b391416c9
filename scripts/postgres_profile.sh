#!/usr/bin/env bash
# A production AiiDA profile: PostgreSQL storage (core.psql_dos) with RabbitMQ (core.rabbitmq) or the built-in ZeroMQ
# broker (core.zeromq).
#
#   bash scripts/postgres_profile.sh --rabbitmq               # profile "physgen-pg", PostgreSQL + RabbitMQ, default
#   bash scripts/postgres_profile.sh                          # profile "physgen-pg", PostgreSQL + ZeroMQ, default
#   bash scripts/postgres_profile.sh [--rabbitmq] my-profile  # another name (database aiida_my_profile)
#
# Use it for any run that is queried while it runs, any daemon with several workers, and anything
# large: SQLite locks the whole database while a process writes, so a second reader (verdi process
# list, a QueryBuilder in a notebook) can break a running screening. Run as root on Debian (PostgreSQL 15 and
# RabbitMQ are apt-installed when missing). The database is made from template0 with the C.UTF-8 collation, which
# every Debian has: `verdi presto --use-postgres` asks for en_US.UTF-8, which is not generated on a fresh image.
# --rabbitmq runs scripts/rabbitmq.sh (installs, configures consumer_timeout as AiiDA asks, starts RabbitMQ).
# Idempotent: an existing role, database or profile is kept; --rabbitmq moves an existing profile to RabbitMQ.
# The profile goes to AiiDA's configuration folder (AIIDA_PATH, else ~/.aiida), its file repository beside it. The
# database role's password is kept in ~/.aiida/aiida_physgen.pgpass, one for every profile of that role.
set -euo pipefail
BROKER=core.zeromq
PROFILE=physgen-pg
for arg in "$@"; do
    case "${arg}" in
    --rabbitmq) BROKER=core.rabbitmq ;;
    --zeromq) BROKER=core.zeromq ;;
    -*) echo "unknown option ${arg}; usage: postgres_profile.sh [--rabbitmq|--zeromq] [PROFILE]" >&2 && exit 2 ;;
    *) PROFILE="${arg}" ;;
    esac
done
DB="aiida_${PROFILE//-/_}"
USER_NAME="aiida_physgen"
HERE="$(cd "$(dirname "$0")" && pwd)"
# AiiDA's configuration folder: the first AIIDA_PATH entry (with .aiida appended unless it ends so), else ~/.aiida
CONFIG_DIR="${AIIDA_PATH:-${HOME}}"
CONFIG_DIR="${CONFIG_DIR%%:*}"
[ "$(basename "${CONFIG_DIR}")" = ".aiida" ] || CONFIG_DIR="${CONFIG_DIR}/.aiida"
PASSWORD_FILE="${HOME}/.aiida/${USER_NAME}.pgpass"

# two runs at once (two test sessions) must not race on the role and its password; the servers started below must
# not inherit the lock (9>&-)
mkdir -p "${HOME}/.aiida" "${CONFIG_DIR}"
exec 9>/tmp/physgen-postgres.lock
flock -w 300 9

if [ "${BROKER}" = core.rabbitmq ]; then
    bash "${HERE}/rabbitmq.sh" 9>&-
fi
if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 9>&-
fi
CLUSTER_VERSION="$(pg_lsclusters -h | awk 'NR==1 {print $1}')"
if ! pg_lsclusters -h | awk 'NR==1 {print $4}' | grep -q online; then
    pg_ctlcluster "${CLUSTER_VERSION}" main start 9>&-
fi

NEW_PASSWORD=0
if [ ! -s "${PASSWORD_FILE}" ]; then
    # the per-profile file of earlier versions of this script, if any, holds the role's current password
    legacy="${HOME}/.aiida/${PROFILE}.pgpass"
    if [ -s "${legacy}" ]; then
        cp "${legacy}" "${PASSWORD_FILE}"
    else
        python3 -c "import secrets; print(secrets.token_hex(16))" >"${PASSWORD_FILE}"
        NEW_PASSWORD=1
    fi
    chmod 600 "${PASSWORD_FILE}"
fi
PASSWORD="$(cat "${PASSWORD_FILE}")"

as_postgres() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ -z "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname='${USER_NAME}'")" ]; then
    as_postgres "CREATE ROLE ${USER_NAME} LOGIN PASSWORD '${PASSWORD}'"
elif [ "${NEW_PASSWORD}" = 1 ]; then
    # only with a new password file: the profiles of this role keep working while the file is there
    as_postgres "ALTER ROLE ${USER_NAME} PASSWORD '${PASSWORD}'"
fi
if [ -z "$(as_postgres "SELECT 1 FROM pg_database WHERE datname='${DB}'")" ]; then
    as_postgres "CREATE DATABASE ${DB} OWNER ${USER_NAME} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
fi

if verdi profile show "${PROFILE}" >/dev/null 2>&1; then
    echo "profile ${PROFILE} exists; kept"
    if [ "${BROKER}" = core.rabbitmq ] && ! verdi profile show "${PROFILE}" | grep -q "core.rabbitmq"; then
        verdi profile configure-broker core.rabbitmq "${PROFILE}" --non-interactive --force --broker-protocol amqp \
            --broker-username guest --broker-password guest --broker-host 127.0.0.1 --broker-port 5672 \
            --broker-virtual-host ""
        echo "profile ${PROFILE} moved to RabbitMQ: restart its daemon (verdi -p ${PROFILE} daemon restart)"
    fi
else
    verdi profile setup core.psql_dos --non-interactive --profile-name "${PROFILE}" --set-as-default \
        --email "${USER:-root}@localhost" --first-name aiida --last-name physgen --institution local \
        --broker "${BROKER}" \
        --database-hostname localhost --database-port 5432 --database-name "${DB}" \
        --database-username "${USER_NAME}" --database-password "${PASSWORD}" \
        --repository-uri "file://${CONFIG_DIR}/repository/${PROFILE}"
fi
if [ "${BROKER}" = core.rabbitmq ]; then
    # `verdi profile setup` makes a profile without a broker, with a warning only, when RabbitMQ does not answer
    if ! verdi profile show "${PROFILE}" | grep -q "core.rabbitmq"; then
        echo "profile ${PROFILE} has no RabbitMQ broker (verdi profile show ${PROFILE})" >&2
        exit 1
    fi
    # AiiDA warns on every RabbitMQ >= 3.8.15 because of its consumer_timeout, which rabbitmq.sh has raised
    verdi -p "${PROFILE}" config set warnings.rabbitmq_version False >/dev/null
fi
# the daemon's controller answers slowly while workers are busy: AiiDA's 2 s default made `verdi daemon restart`
# time out mid-screening and leave the daemon down
verdi -p "${PROFILE}" config set daemon.timeout 20 >/dev/null
# what `verdi status` says of storage and broker, without its daemon check (daemon.timeout seconds when it is down)
python3 -c "
from aiida import load_profile
from aiida.manage import get_manager
profile = load_profile('${PROFILE}')
print(f'profile {profile.name}: {get_manager().get_profile_storage()}; broker {get_manager().get_broker()}')
"
