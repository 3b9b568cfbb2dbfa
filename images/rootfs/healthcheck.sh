#!/bin/bash
# Stand-in for the official MariaDB image's healthcheck.sh (its arguments, e.g.
# --connect --innodb_initialized, are accepted and ignored): the server accepts a
# login on its socket once initialisation is over.
set -euo pipefail
pw=${MARIADB_ROOT_PASSWORD:-}
if [ -n "${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then pw=$(cat "$MARIADB_ROOT_PASSWORD_FILE"); fi
MYSQL_PWD=$pw exec mariadb-admin --socket=/run/mysqld/mysqld.sock -uroot ping >/dev/null 2>&1
