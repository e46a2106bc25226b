#!/usr/bin/env bash
# Makes a test CA, a server certificate for HOSTS (default "localhost 127.0.0.1") and a client
# certificate in DIR (default ./certs), with openssl, for Tusk's SSL and SASL_SSL listeners:
#   ca.pem                  the CA (clients' ssl.ca.location; the broker's truststore for mTLS)
#   server-keystore.pem     server certificate and key (--ssl-keystore-location)
#   client.pem, client.key  a client certificate (User:CN=client,O=Tusk) for mTLS
# For development only: keys are unencrypted and the certificates last 365 days.
set -euo pipefail
dir="${1:-certs}"
hosts="${HOSTS:-localhost 127.0.0.1}"
mkdir -p "$dir"
cd "$dir"
san=""
for h in $hosts; do
    if [[ "$h" =~ ^[0-9.]+$ ]]; then san="$san,IP:$h"; else san="$san,DNS:$h"; fi
done
san="${san#,}"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 365 -subj /CN=tusk-dev-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=${hosts%% *}" 2>/dev/null
echo "subjectAltName=$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 365 -extfile server.ext 2>/dev/null
cat server.pem server.key > server-keystore.pem
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/O=Tusk/CN=client" 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 365 2>/dev/null
rm -f server.csr client.csr server.ext ca.srl
echo "made $(pwd)/{ca.pem,server-keystore.pem,client.pem,client.key} for: $hosts"
