#!/usr/bin/env bash
# Make the secret files docker-compose.yml mounts, for a first deployment or a trial.
# Existing files are kept (run it again safely); delete one to replace it, knowing what
# that means (docs/operations.md, "Secrets" and "Keys"). Needs openssl; the trial token
# issuer needs the homeroom command (./run, or HOMEROOM="docker run --rm -i homeroom:local").
#
# Production: the pseudonym key and the audit signing key should come from your secret
# store, and auth_jwks / service_token from your identity provider (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")"
umask 077

HOMEROOM_UID=10001   # the image's user (Dockerfile)
POSTGRES_UID=999     # postgres image
GRAFANA_UID=472      # grafana image
HOMEROOM="${HOMEROOM:-../../run}"
ISSUER="${HOMEROOM_AUTH_ISSUER:-https://trial-issuer.homeroom.invalid}"
AUDIENCE="${HOMEROOM_AUTH_AUDIENCE:-homeroom}"

made=()
new() { [ ! -e "$1" ] && made+=("$1"); }

# PostgreSQL password, once for the server (postgres_password) and once for the
# services in libpq's password-file format (pgpass, read through PGPASSFILE).
if new postgres_password; then
  openssl rand -base64 32 | tr -d '/+=\n' > postgres_password
fi
# One login per service and the owner that migrates (least privilege: docs/security.md),
# each with its own password in libpq's password-file format; deploy/postgres/roles.sh
# creates the roles from these files on PostgreSQL's first start.
for role in owner ingest records consent transfer audit incidents reports; do
  if new "pgpass_$role"; then
    printf 'postgres:5432:*:homeroom_%s:%s\n' "$role" "$(openssl rand -base64 32 | tr -d '/+=\n')" > "pgpass_$role"
  fi
done
# The same passwords for PostgreSQL's first start (read by deploy/postgres/roles.sh as the
# postgres image's user, which cannot read the services' files): role:password per line.
if new postgres_roles; then
  for role in owner ingest records consent transfer audit incidents reports; do
    cut -d: -f4,5 "pgpass_$role"
  done > postgres_roles
fi
# The key of the keyed student pseudonyms: 32 random bytes, base64. The same key for
# every service and for ever: a new key gives every student a new pseudonym.
if new pseudonym.key; then
  openssl rand -base64 32 > pseudonym.key
fi
# The audit log's Ed25519 signing key (PKCS#8 PEM). Publish its public half to whoever
# verifies exports: openssl pkey -in audit-signing.key -pubout
if new audit-signing.key; then
  openssl genpkey -algorithm ed25519 -out audit-signing.key
fi
# The key that signs frozen breach scopes (services/incidents): publish its public half to
# whoever verifies scope bundles (the state's Chief Privacy Officer).
if new incidents-signing.key; then
  openssl genpkey -algorithm ed25519 -out incidents-signing.key
fi
# Its public half, for the witness (and verifiers) to pin.
if new audit-log.pub.pem; then
  openssl pkey -in audit-signing.key -pubout -out audit-log.pub.pem
fi
# The witness's own key (c2sp.org/tlog-witness): better made and kept by another operator,
# who then gives you only witness.pub.pem.
if new witness.key; then
  openssl genpkey -algorithm ed25519 -out witness.key
fi
if new witness.pub.pem; then
  openssl pkey -in witness.key -pubout -out witness.pub.pem
fi
# The portal's OIDC client secret: register the portal with your identity provider as a
# confidential client (id homeroom-portal) with this secret, or replace the file with its own.
# The secret consent keeps linking codes under (an HMAC, never the code; issue 24): 32 random
# bytes, base64. A new key makes every unredeemed code unredeemable (issue new letters).
if new linking-code.key; then
  openssl rand -base64 32 > linking-code.key
fi
if new portal_oidc_client_secret; then
  openssl rand -base64 32 | tr -d '/+=\n' > portal_oidc_client_secret
fi
# Consent signs parents' tokens from their guardianship links (issue 24) with this key; every
# service trusts its key set for role parent only.
if [ ! -e guardian-issuer.pem ] || [ ! -e guardian_jwks.json ]; then
  HOMEROOM_AUTH_ISSUER=homeroom-guardianship HOMEROOM_AUTH_AUDIENCE="$AUDIENCE" \
    $HOMEROOM token jwks --key-file "$PWD/guardian-issuer.pem" > guardian_jwks.json
  made+=(guardian-issuer.pem guardian_jwks.json)
fi
if new grafana_admin_password; then
  openssl rand -base64 24 | tr -d '/+=\n' > grafana_admin_password
fi
# Trial only: a local token issuer whose key set the services trust and a long-lived
# service token signed by it. In production these come from your OIDC provider.
if [ ! -e auth_jwks.json ] || [ ! -e service_token ]; then
  export HOMEROOM_AUTH_ISSUER="$ISSUER" HOMEROOM_AUTH_AUDIENCE="$AUDIENCE"
  # trial-issuer.pem (the private key) is made by the first call and stays here, unmounted.
  $HOMEROOM token jwks --key-file "$PWD/trial-issuer.pem" > auth_jwks.json
  $HOMEROOM token issue --key-file "$PWD/trial-issuer.pem" --role service --subject homeroom-services \
    --ttl $((30 * 24 * 3600)) > service_token
  made+=(auth_jwks.json service_token)
  echo "trial issuer $ISSUER: export HOMEROOM_AUTH_ISSUER=$ISSUER before docker compose up" >&2
fi

PGPASS_FILES="pgpass_owner pgpass_ingest pgpass_records pgpass_consent pgpass_transfer pgpass_audit pgpass_incidents pgpass_reports"
# shellcheck disable=SC2086
chmod 600 $PGPASS_FILES
chmod 600 witness.key
chmod 644 audit-log.pub.pem witness.pub.pem
chmod 600 postgres_password postgres_roles pseudonym.key linking-code.key audit-signing.key grafana_admin_password auth_jwks.json service_token \
  portal_oidc_client_secret incidents-signing.key guardian-issuer.pem guardian_jwks.json
# Compose mounts these files as they are: the reading container's user must own them.
if [ "$(id -u)" -eq 0 ]; then
  # shellcheck disable=SC2086
  chown "$HOMEROOM_UID:$HOMEROOM_UID" $PGPASS_FILES
  chown "$HOMEROOM_UID:$HOMEROOM_UID" witness.key audit-log.pub.pem witness.pub.pem
  chown "$HOMEROOM_UID:$HOMEROOM_UID" pseudonym.key linking-code.key audit-signing.key auth_jwks.json service_token \
    portal_oidc_client_secret incidents-signing.key guardian-issuer.pem guardian_jwks.json
  chown "$POSTGRES_UID:$POSTGRES_UID" postgres_password postgres_roles
  chown "$GRAFANA_UID:$GRAFANA_UID" grafana_admin_password
else
  echo "not root: run these so the containers can read their secrets:" >&2
  echo "  sudo chown $HOMEROOM_UID:$HOMEROOM_UID $PWD/{pgpass_*,pseudonym.key,audit-signing.key,auth_jwks.json,service_token}" >&2
  echo "  sudo chown $POSTGRES_UID:$POSTGRES_UID $PWD/{postgres_password,postgres_roles}" >&2
  echo "  sudo chown $GRAFANA_UID:$GRAFANA_UID $PWD/grafana_admin_password" >&2
fi
if [ "${#made[@]}" -gt 0 ]; then echo "made: ${made[*]}" >&2; else echo "all secrets already present" >&2; fi
