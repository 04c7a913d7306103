/* `mesh-control --data DIR apikeys create [DESCRIPTION] | list [--json] |
 * revoke ID`: API keys for the HTTP admin API (admin.h). The secret is
 * printed once, on stdout, by create; nothing else ever shows it. */
#include "servers/control/admin.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "servers/control/cli_store.h"
#include "servers/control/cli_util.h"
#include "servers/control/json_util.h"
#include "servers/control/store.h"

static int acli_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-control: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nusage: mesh-control --data DIR apikeys create [DESCRIPTION]\n"
	                "       mesh-control --data DIR apikeys list [--json]\n"
	                "       mesh-control --data DIR apikeys revoke ID\n");
	return 2;
}

/* An initialised store in dir (SQLite or PostgreSQL), or NULL after
 * saying why. */
static struct ctl_store *acli_open(const char *dir)
{
	struct ctl_meta meta;
	return ctl_cli_store_open(dir, &meta, NULL, 0);
}

static int acli_create(struct ctl_store *st, const char *desc)
{
	char secret[CTL_SECRET_MAX];
	struct ctl_apikey k;
	int r = ctl_store_apikey_create(st, desc, (int64_t)time(NULL), secret,
	                                sizeof secret, &k);
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return r == CTL_STORE_EINVAL ? 2 : 1;
	}
	printf("%s\n", secret);
	fflush(stdout);
	sodium_memzero(secret, sizeof secret);
	fprintf(stderr,
	        "mesh-control: API key %lld%s%s%s: the secret above is shown only "
	        "once; store it now. Use it as `Authorization: Bearer SECRET`; "
	        "revoke with `mesh-control apikeys revoke %lld`\n",
	        (long long)k.id, k.description[0] ? " (" : "", k.description,
	        k.description[0] ? ")" : "", (long long)k.id);
	return 0;
}

static int acli_list(struct ctl_store *st, int json)
{
	struct ctl_apikey *ks;
	size_t n;
	char cre[32], used[32];

	if (ctl_store_apikey_list(st, &ks, &n) < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	json_t *arr = json ? json_array() : NULL;
	if (json && !arr) {
		free(ks);
		fprintf(stderr, "mesh-control: out of memory\n");
		return 1;
	}
	if (!json && n)
		printf("%-5s %-8s %-21s %-21s %s\n", "ID", "STATE", "CREATED",
		       "LAST USED", "DESCRIPTION");
	if (!json && !n)
		fprintf(stderr, "mesh-control: no API keys yet; make one with "
		                "`mesh-control apikeys create`\n");
	for (size_t i = 0; i < n; i++) {
		const struct ctl_apikey *k = &ks[i];
		if (arr) {
			json_array_append_new(arr, ctl_json_apikey(k));
			continue;
		}
		ctl_cli_fmt_time(cre, sizeof cre, k->created);
		ctl_cli_fmt_time(used, sizeof used, k->last_used);
		printf("%-5lld %-8s %-21s %-21s %s\n", (long long)k->id,
		       k->revoked ? "revoked" : "valid", cre, used,
		       k->description[0] ? k->description : "-");
	}
	free(ks);
	if (!arr)
		return 0;
	int r = json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(arr);
	if (r < 0) {
		fprintf(stderr, "mesh-control: out of memory\n");
		return 1;
	}
	printf("\n");
	return 0;
}

static int acli_revoke(struct ctl_store *st, long long id)
{
	int r = ctl_store_apikey_revoke(st, (int64_t)id);
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(
		    stderr,
		    "mesh-control: no API key %lld; see `mesh-control apikeys list`\n",
		    id);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	printf("revoked API key %lld\n", id);
	return 0;
}

int ctl_admin_cli_apikeys(const char *data_dir, int argc, char **argv, int json)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	long long id = 0;

	/* Argument checks first: a usage error needs no store. */
	if (!sub)
		return acli_usage("%s", "apikeys needs a subcommand: create, list or "
		                        "revoke");
	if (!strcmp(sub, "create")) {
		if (argc > 3)
			return acli_usage("unexpected argument %s (quote a description "
			                  "with spaces)",
			                  argv[3]);
		if (json)
			return acli_usage("%s", "apikeys create does not take --json");
	} else if (!strcmp(sub, "list")) {
		if (argc > 2)
			return acli_usage("unexpected argument %s", argv[2]);
	} else if (!strcmp(sub, "revoke")) {
		char *end;
		if (argc != 3)
			return acli_usage("%s", "apikeys revoke needs one key ID (see "
			                        "`mesh-control apikeys list`)");
		if (json)
			return acli_usage("%s", "apikeys revoke does not take --json");
		errno = 0;
		id = strtoll(argv[2], &end, 10);
		if (errno || *end || end == argv[2] || id <= 0)
			return acli_usage(
			    "apikeys revoke %s: expected a key ID (a number "
			    "from `mesh-control apikeys list`)",
			    argv[2]);
	} else {
		return acli_usage("unknown command apikeys %s", sub);
	}
	if (!data_dir || !*data_dir)
		return acli_usage("%s", "no data directory: pass --data DIR or set "
		                        "MESH_CONTROL_DATA");

	struct ctl_store *st = acli_open(data_dir);
	if (!st)
		return 1;
	int r;
	if (!strcmp(sub, "create"))
		r = acli_create(st, argc > 2 ? argv[2] : NULL);
	else if (!strcmp(sub, "list"))
		r = acli_list(st, json);
	else
		r = acli_revoke(st, id);
	ctl_store_close(st);
	return r;
}
