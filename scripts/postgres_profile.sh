#!/usr/bin/env bash
# A production AiiDA profile: PostgreSQL storage (core.psql_dos) and the built-in ZeroMQ broker.
#
#   bash scripts/postgres_profile.sh               # profile "physgen-pg", made the default
#   bash scripts/postgres_profile.sh my-profile    # another name
#
# Use it for any run that is queried while it runs, any daemon with several workers, and anything
# large: SQLite locks the whole database while a process writes, so a second reader (verdi process
# list, a QueryBuilder in a notebook) can break a running screening. Run as root on Debian with
# PostgreSQL 15 installed (apt-get install postgresql). The database is made from template0 with the
# C.UTF-8 collation, which every Debian has: `verdi presto --use-postgres` asks for en_US.UTF-8, which
# is not generated on a fresh image. Idempotent: an existing role, database or profile is kept.
set -euo pipefail
PROFILE="${1:-physgen-pg}"
DB="aiida_${PROFILE//-/_}"
USER_NAME="aiida_physgen"
PASSWORD_FILE="${HOME}/.aiida/${PROFILE}.pgpass"

if ! command -v pg_ctlcluster >/dev/null; then
    apt-get install -y -q postgresql >/dev/null
fi
CLUSTER_VERSION="$(pg_lsclusters -h | awk 'NR==1 {print $1}')"
if ! pg_lsclusters -h | awk 'NR==1 {print $4}' | grep -q online; then
    pg_ctlcluster "${CLUSTER_VERSION}" main start
fi

mkdir -p "${HOME}/.aiida"
if [ ! -s "${PASSWORD_FILE}" ]; then
    python3 -c "import secrets; print(secrets.token_hex(16))" > "${PASSWORD_FILE}"
    chmod 600 "${PASSWORD_FILE}"
fi
PASSWORD="$(cat "${PASSWORD_FILE}")"

as_postgres() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ -z "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname='${USER_NAME}'")" ]; then
    as_postgres "CREATE ROLE ${USER_NAME} LOGIN PASSWORD '${PASSWORD}'"
else
    as_postgres "ALTER ROLE ${USER_NAME} PASSWORD '${PASSWORD}'"
fi
if [ -z "$(as_postgres "SELECT 1 FROM pg_database WHERE datname='${DB}'")" ]; then
    as_postgres "CREATE DATABASE ${DB} OWNER ${USER_NAME} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
fi

if verdi profile show "${PROFILE}" >/dev/null 2>&1; then
    echo "profile ${PROFILE} exists; kept"
else
    verdi profile setup core.psql_dos --non-interactive --profile-name "${PROFILE}" --set-as-default \
        --email "${USER:-root}@localhost" --first-name aiida --last-name physgen --institution local \
        --broker core.zeromq \
        --database-hostname localhost --database-port 5432 --database-name "${DB}" \
        --database-username "${USER_NAME}" --database-password "${PASSWORD}" \
        --repository-uri "file://${HOME}/.aiida/repository/${PROFILE}"
fi
# the daemon's controller answers slowly while workers are busy: AiiDA's 2 s default made `verdi daemon restart`
# time out mid-screening and leave the daemon down
verdi -p "${PROFILE}" config set daemon.timeout 20 >/dev/null
verdi -p "${PROFILE}" status
