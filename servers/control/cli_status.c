/* `mesh-control [--data DIR] status [--json]`: which store the data
 * directory names (SQLite or PostgreSQL, described without a password),
 * the mesh, its map version and how many nodes it has. Reads only. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

#include "servers/control/cli_int.h"
#include "servers/control/cli_store.h"
#include "servers/control/store.h"

int ctl_cli_cmd_status(const struct cli *c, const char *dir)
{
	char where[CTL_CLI_WHERE_MAX];
	struct ctl_meta meta;
	struct ctl_store *st = ctl_cli_store_open(dir, &meta, where, sizeof where);
	if (!st)
		return 1;
	int64_t version = 0, total = 0, approved = 0, pending = 0;
	int r = ctl_store_map_version(st, &version);
	if (r == 0)
		r = ctl_store_node_counts(st, &total, &approved);
	if (r == 0)
		r = ctl_store_node_pending_count(st, &pending);
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s: %s\n", where, ctl_store_errmsg(st));
		ctl_store_close(st);
		return 1;
	}
	char pub[sodium_base64_ENCODED_LEN(CTL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(pub, sizeof pub, meta.server_public, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	const char *kind = ctl_store_kind(st);
	ctl_store_close(st);
	if (c->seen & O_JSON) {
		json_t *j = json_pack(
		    "{s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I}}", "data",
		    dir, "store", "kind", kind, "where", where, "mesh_id", meta.mesh_id,
		    "domain", meta.domain, "server_key", pub, "map_version",
		    (json_int_t)version, "nodes", "total", (json_int_t)total, "approved",
		    (json_int_t)approved, "pending", (json_int_t)pending);
		char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		json_decref(j);
		if (!s) {
			fprintf(stderr, "mesh-control: out of memory\n");
			return 1;
		}
		printf("%s\n", s);
		free(s);
		return 0;
	}
	printf("data         %s\n", dir);
	printf("store        %s\n", where);
	printf("mesh         %s (domain %s)\n", meta.mesh_id, meta.domain);
	printf("server key   %s (public)\n", pub);
	printf("map version  %lld\n", (long long)version);
	printf("nodes        %lld (%lld approved, %lld waiting for approval)\n",
	       (long long)total, (long long)approved, (long long)pending);
	return 0;
}
