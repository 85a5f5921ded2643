# For the shell tests (source it): the PostgreSQL server of tests/with_pg.
#   pg_db NAME       a fresh, empty database NAME; prints its URL (fails without a server)
#   pg_sql URL SQL   runs SQL, prints the rows (unaligned, no headers)
pg_db() {
  [ -n "${SABIO_TEST_PG:-}" ] || return 1
  PGOPTIONS='-c client_min_messages=warning' psql "$SABIO_TEST_PG/postgres" -qAtX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $1" \
    -c "CREATE DATABASE $1" >/dev/null && echo "$SABIO_TEST_PG/$1"
}
pg_sql() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }
