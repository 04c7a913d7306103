/* How mesh-control connects to PostgreSQL, shared by the store
 * (store_pg.c) and migrate (migrate.c). */
#ifndef MESH_CTL_STORE_PG_CONN_H
#define MESH_CTL_STORE_PG_CONN_H

#include <libpq-fe.h>
#include <stddef.h>

/* A connection to url with mesh-control's limits (connect_timeout 3 s,
 * TCP keepalives and user timeout, unless url sets them) and
 * client_encoding UTF8; NULL only without memory (check PQstatus). */
PGconn *ctl_pg_connect(const char *url);

/* 0 if the connected database's encoding is UTF8, else -1 with err saying
 * how to make one that is: other encodings garble or refuse the UTF-8
 * text (host names, user names, the policy) that the store keeps. */
int ctl_pg_encoding_check(PGconn *c, char *err, size_t errlen);

#endif
