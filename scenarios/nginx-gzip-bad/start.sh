#!/bin/sh
# Starts nginx (it daemonizes: master and workers) over a generated page.
set -e
cell=$(dirname "$0")
mkdir -p "$cell/www" "$cell/tmp"
seq 1 20000 > "$cell/www/big.txt"
exec nginx -p "$cell/" -c "$cell/nginx.conf"
