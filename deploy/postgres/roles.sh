#!/usr/bin/env bash
# PostgreSQL's first start (docker-entrypoint-initdb.d): the roles Homeroom runs as.
#   homeroom_owner       owns every Homeroom database and runs migrations (`homeroom migrate`)
#   homeroom_<service>   one login per service: owns nothing, cannot alter schema or triggers,
#                        cannot set session_replication_role; granted by the migration runner
# Passwords come from the postgres_roles secret (role:password per line; the same ones the
# services' pgpass_<name> secrets hold). On an existing volume run this once by hand:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-homeroom-roles.sh
set -euo pipefail
while IFS=: read -r role password; do
  [ -n "$role" ] || continue
  case "$role" in
    homeroom_owner) attributes="LOGIN NOSUPERUSER CREATEDB CREATEROLE" ;;
    homeroom_*) attributes="LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION" ;;
    *) echo "skipping $role: not a Homeroom role" >&2; continue ;;
  esac
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v role="$role" -v password="$password" <<SQL
SELECT format('CREATE ROLE %I $attributes PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SQL
done < /run/secrets/postgres_roles
