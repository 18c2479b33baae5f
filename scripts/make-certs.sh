#!/usr/bin/env bash
# Makes a certificate authority and certificates it signs, with openssl, for
# trying TLS out and for the tests (docs/security.md walks through each step).
#
#   scripts/make-certs.sh DIR NAME...
#
# DIR/ca.crt and DIR/ca.key: the CA (made once; kept if already there).
# DIR/NAME.crt and DIR/NAME.key for each NAME: subject CN=NAME, alternative
# names DNS:NAME plus the hosts in PICCOLO_CERT_HOSTS (default
# "localhost,127.0.0.1"), good both for serving and for dialing (serverAuth,
# clientAuth), so one file serves a node's ports and its peer connections.
# Keys are EC P-256 and readable by their owner alone.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME..." >&2; exit 2; }
dir=$1
shift
hosts=${PICCOLO_CERT_HOSTS:-localhost,127.0.0.1}
mkdir -p "$dir"
cd "$dir"
umask 077
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.crt -days 3650 -subj "/CN=Piccolo CA" 2>/dev/null
fi
for name in "$@"; do
  san="DNS:$name"
  IFS=, read -r -a extra <<<"$hosts"
  for h in "${extra[@]}"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san="$san,IP:$h"; else san="$san,DNS:$h"; fi
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$name.crt" -days 825 2>/dev/null \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' "$san")
  rm -f "$name.csr"
done
chmod 644 ca.crt ./*.crt
