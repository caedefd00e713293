#!/usr/bin/env bash
# Make your own certificate and key for huddle-server (instead of the generated one).
#
#   scripts/make-cert.sh [HOSTNAME] [OUT-DIR]
#   huddle-server --cert OUT-DIR/cert.pem --key OUT-DIR/key.pem
#
# The certificate is self-signed for HOSTNAME (default: localhost), valid for 825 days, and
# marked as an end-entity certificate (CA:FALSE) so that rustls/webpki clients accept it when
# they trust it directly with `huddle --ca OUT-DIR/cert.pem`.
set -euo pipefail
host="${1:-localhost}"
out="${2:-.}"
mkdir -p "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=$host" \
  -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$out/key.pem" -out "$out/cert.pem"
chmod 644 "$out/cert.pem"
echo "wrote $out/cert.pem and $out/key.pem (key mode 0600)"
openssl x509 -in "$out/cert.pem" -noout -fingerprint -sha256
