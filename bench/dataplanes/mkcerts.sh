#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Certificates for the HAProxy mTLS data plane of bench/run.py, from the
# openssl CLI: a CA and one leaf per side (ECDSA P-256, SHA-256, 1 day), each
# leaf written as cert+key in one PEM, the form HAProxy's "crt" takes.
#   mkcerts.sh DIR     -> DIR/ca.pem DIR/client.pem DIR/server.pem
set -eu
d=$1
mkdir -p "$d"
cd "$d"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 1 -subj "/CN=bench sidecar CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	2>/dev/null
for side in client server; do
	openssl req $ec -keyout $side.key -out $side.csr -subj "/CN=bench-$side" 2>/dev/null
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:bench-%s\n' \
		$side >$side.ext
	openssl x509 -req -in $side.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-sha256 -extfile $side.ext -out $side.crt 2>/dev/null
	cat $side.crt $side.key >$side.pem
	rm -f $side.csr $side.ext
done
chmod 600 ./*.key ./*.pem
