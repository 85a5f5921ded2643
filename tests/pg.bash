# For the shell tests (source it): the PostgreSQL server of tests/with_pg.
#   pg_db NAME       a fresh, empty database NAME; prints its URL (fails without a server)
#   pg_why           why pg_db fails (empty if it should not)
#   pg_sql URL SQL   runs SQL, prints the rows (unaligned, no headers)
pg_why() {
  if [ -z "${SABIO_TEST_PG:-}" ]; then echo "no PostgreSQL server (run through tests/with_pg, as make test does)"
  elif "${SABIO:-build/sabio}" docs --store postgres://127.0.0.1:1/x stats 2>&1 | grep -q "without PostgreSQL support"; then
    echo "this sabio was built without libpq"
  fi
}
pg_db() {
  [ -z "$(pg_why)" ] || return 1
  PGOPTIONS='-c client_min_messages=warning' psql "$SABIO_TEST_PG/postgres" -qAtX -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null && echo "$SABIO_TEST_PG/$1"
}
pg_sql() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }
