#!/bin/sh
# The project's own role and database, next to Temporal's databases in the same server.
#
# The postgres image runs this from /docker-entrypoint-initdb.d once, when it initialises an
# empty data directory. It is idempotent, so on a volume created before this script existed
# run it by hand:
#   docker compose exec postgresql sh /docker-entrypoint-initdb.d/10-hitl-database.sh
#
# HITL_DB_USER / HITL_DB_PASSWORD come from the postgresql service's environment
# (docker-compose.yml); the role owns the database and nothing else, so the application
# cannot touch Temporal's schemas.
set -e

HITL_DB_NAME="${HITL_DB_NAME:-hitl}"
HITL_DB_USER="${HITL_DB_USER:-hitl}"
if [ -z "${HITL_DB_PASSWORD:-}" ]; then
    echo "10-hitl-database.sh: HITL_DB_PASSWORD is not set" >&2
    exit 1
fi

# psql variables (:'name') are quoted by psql itself; \gexec runs each generated statement,
# so CREATE ROLE / CREATE DATABASE (which have no IF NOT EXISTS) run only when missing.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v db="$HITL_DB_NAME" -v owner="$HITL_DB_USER" -v password="$HITL_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
echo "10-hitl-database.sh: database \"$HITL_DB_NAME\" owned by \"$HITL_DB_USER\" is ready"
