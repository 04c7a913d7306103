/* Copying a SQLite control store into an empty PostgreSQL one (`mesh-control
 * migrate`). The one place that knows both schemas' columns: it reads the
 * SQLite tables and columns from the file itself (sqlite_master, PRAGMA
 * table_info), so a column added later is copied too, or refused when the
 * PostgreSQL table lacks it -- never dropped.
 *
 * Use: ctl_mig_open (locks the SQLite file, connects, checks both sides),
 * ctl_mig_copy (one PostgreSQL transaction), then whatever must happen
 * while the SQLite file is still locked (writing DIR/store.url, renaming
 * control.db), then ctl_mig_close. */
#ifndef MESH_CTL_MIGRATE_H
#define MESH_CTL_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#define CTL_MIG_TABLES_MAX 32

struct ctl_mig;

struct ctl_mig_table {
	char name[64];
	int64_t rows;
};

struct ctl_mig_result {
	struct ctl_mig_table t[CTL_MIG_TABLES_MAX];
	int n;
	int64_t rows; /* all tables */
	char mesh_id[33];
	double seconds;
};

/* Progress: called every CTL_MIG_PROGRESS_ROWS rows and at each table's
 * end with the rows copied so far of that table and its total. */
#define CTL_MIG_PROGRESS_ROWS 1000
typedef void (*ctl_mig_progress_fn)(void *arg, const char *table, int64_t done,
                                    int64_t total);

/* Opens DIR/control.db exclusively (refused while any other process has it
 * open: a running serve or admin command) and connects to url. Both
 * schemas must be at ctl_schema_version (open each with its store's open
 * function first: that migrates them). The PostgreSQL database must hold
 * no mesh: no meta row and no rows in any table migrate writes. NULL on
 * failure with a sentence in err (never the URL's password). */
struct ctl_mig *ctl_mig_open(const char *dir, const char *url, char *err, size_t errlen);

/* Copies every row of every SQLite table in one PostgreSQL transaction,
 * sets the identity sequences past the largest ids ever issued, checks the
 * row counts, commits. 0, or -1 with err (nothing written). */
int ctl_mig_copy(struct ctl_mig *m, ctl_mig_progress_fn fn, void *arg,
                 struct ctl_mig_result *res, char *err, size_t errlen);

/* Ends the SQLite read and unlocks the file; accepts NULL. */
void ctl_mig_close(struct ctl_mig *m);

#endif
