#!/bin/sh
# One correctness check: fetch the page gzip-compressed, as a browser does, and
# check that it decompresses to the file nginx serves. gzip -t verifies the
# CRC-32 in the gzip trailer, which nginx's workers computed with libz's crc32_z.
# Debian's essential set has no HTTP client: the image's busybox wget is used
# (it keeps the body compressed).
set -e
cell=$(dirname "$0")
/usr/lib/patchlab/busybox wget -q --header 'Accept-Encoding: gzip' -O "$cell/got.gz" \
  http://127.0.0.1:8080/big.txt
gzip -t "$cell/got.gz"
gzip -dc "$cell/got.gz" | cmp -s - "$cell/www/big.txt"
echo ok
