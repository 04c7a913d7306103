/* The control store's schema, one list for both engines: ctl_migrations[v]
 * takes a store from schema version v to v + 1, in SQLite's dialect and in
 * PostgreSQL's. Both stores hold the same tables, columns and meaning at
 * the same version (mesh-control migrate copies between them column by
 * column); a new version is one more entry with both texts. SQLite keeps
 * the version in PRAGMA user_version, PostgreSQL in schema_version. */
#ifndef MESH_CTL_STORE_SCHEMA_H
#define MESH_CTL_STORE_SCHEMA_H

struct ctl_migration {
	const char *sqlite;
	const char *pg;
};

extern const struct ctl_migration ctl_migrations[];
extern const int ctl_schema_version; /* number of entries */

#endif
