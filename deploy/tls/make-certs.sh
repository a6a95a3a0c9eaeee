#!/usr/bin/env bash
# Make a private CA and the certificates deploy/tls/compose.tls.yml mounts. For a trial or
# an internal deployment; with certificates from your own CA, put files of the same names
# here instead (README.md lists them). Existing files are kept. Needs openssl (3.2+ for
# the Java truststore; otherwise it uses keytool from the Kafka image through docker).
set -euo pipefail
cd "$(dirname "$0")"
umask 077

PUBLIC_HOST="${HOMEROOM_PUBLIC_HOST:-homeroom.localhost}"
DAYS="${CERT_DAYS:-397}"
KAFKA_IMAGE="${KAFKA_IMAGE:-apache/kafka:4.1.0}"
mkdir -p kafka

if [ ! -e ca.key ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 -keyout ca.key -out ca.crt \
    -subj "/CN=Homeroom private CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

# cert NAME "SAN list" "extendedKeyUsage"
cert() {
  local name="$1" san="$2" eku="$3"
  [ -e "$name.crt" ] && return 0
  openssl req -newkey rsa:2048 -sha256 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=${name}"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
    "$san" "$eku" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$DAYS" -sha256 \
    -extfile "$name.ext" -out "$name.crt"
  rm -f "$name.csr" "$name.ext"
}

cert https "DNS:$PUBLIC_HOST,DNS:localhost" serverAuth
cert postgres "DNS:postgres" serverAuth
cert kafka "DNS:kafka,DNS:localhost" serverAuth,clientAuth
cert homeroom-client "DNS:homeroom-services" clientAuth

# Kafka reads PKCS#12 stores, their password from a file (the image's start script).
[ -e kafka/store_password ] || openssl rand -hex 24 > kafka/store_password
PASS="$(cat kafka/store_password)"
if [ ! -e kafka/kafka.keystore.p12 ]; then
  openssl pkcs12 -export -name kafka -in kafka.crt -inkey kafka.key -certfile ca.crt \
    -out kafka/kafka.keystore.p12 -passout "pass:$PASS"
fi
if [ ! -e kafka/kafka.truststore.p12 ]; then
  if openssl pkcs12 -help 2>&1 | grep -q jdktrust; then
    openssl pkcs12 -export -nokeys -in ca.crt -jdktrust anyExtendedKeyUsage \
      -out kafka/kafka.truststore.p12 -passout "pass:$PASS"
  else
    cp ca.crt kafka/ca.crt
    docker run --rm -v "$PWD/kafka:/w" --entrypoint keytool "$KAFKA_IMAGE" -importcert -noprompt \
      -alias homeroom-ca -file /w/ca.crt -keystore /w/kafka.truststore.p12 -storetype PKCS12 -storepass "$PASS"
  fi
fi
# Client settings for Kafka's own tools (topic job, health check): the broker's certificate
# doubles as their client certificate (it carries clientAuth).
cat > kafka/client.properties <<PROPS
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=/etc/kafka/secrets/kafka.keystore.p12
ssl.keystore.password=$PASS
ssl.key.password=$PASS
ssl.truststore.type=PKCS12
ssl.truststore.location=/etc/kafka/secrets/kafka.truststore.p12
ssl.truststore.password=$PASS
ssl.endpoint.identification.algorithm=https
PROPS

# The bundle httpx trusts for calls between services: our CA plus the public roots.
cat ca.crt > ca-bundle.crt
for roots in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -r "$roots" ]; then cat "$roots" >> ca-bundle.crt; break; fi
done

chmod 644 ca.crt ca-bundle.crt https.crt postgres.crt kafka.crt homeroom-client.crt
chmod 600 ca.key https.key postgres.key kafka.key homeroom-client.key
chmod 640 kafka/*
if [ "$(id -u)" -eq 0 ]; then
  chown 999:999 postgres.key                      # postgres image user
  chown 10001:10001 homeroom-client.key            # Homeroom image user
  chown -R 1000:1000 kafka                         # apache/kafka image user (appuser)
else
  echo "not root: sudo chown 999:999 postgres.key; sudo chown 10001:10001 homeroom-client.key; sudo chown -R 1000:1000 kafka" >&2
fi
echo "certificates in $PWD; keep ca.key offline once the certificates are made" >&2
