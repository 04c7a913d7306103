/* mesh-control relays list | remove NAME. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "servers/control/cli_int.h"
#include "servers/control/store.h"

int ctl_cli_cmd_relays_list(const struct cli *c, struct ctl_store *st)
{
	struct ctl_relay_rec *rs;
	size_t n;
	if (ctl_store_relay_list(st, &rs, &n) < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	json_t *arr = (c->seen & O_JSON) ? json_array() : NULL;
	if (!arr && n)
		printf("%-5s %-20s %-12s %-32s %-6s %s\n", "ID", "NAME", "REGION",
		       "ADDRESS", "STUN", "TLS");
	if (!arr && !n)
		fprintf(stderr,
		        "mesh-control: no relays yet; make a relay join token with "
		        "`mesh-control token --relay`\n");
	for (size_t i = 0; i < n; i++) {
		const struct ctl_relay_rec *r = &rs[i];
		char addr[300], key[64];
		snprintf(addr, sizeof addr, "%s:%u", r->host, r->port);
		sodium_bin2base64(key, sizeof key, r->key, CTL_KEY_LEN,
		                  sodium_base64_VARIANT_ORIGINAL);
		if (arr) {
			json_array_append_new(
			    arr, json_pack("{s:I, s:s, s:s, s:s, s:i, s:i, s:b, s:s}",
			                   "id", (json_int_t)r->id, "name", r->name,
			                   "region", r->region, "host", r->host, "port",
			                   (int)r->port, "stun_port", (int)r->stun_port,
			                   "tls", r->tls, "key", key));
		} else {
			char stun[8];
			snprintf(stun, sizeof stun, "%u", r->stun_port);
			printf("%-5lld %-20s %-12s %-32s %-6s %s\n", (long long)r->id,
			       r->name, r->region, addr, r->stun_port ? stun : "-",
			       r->tls ? "yes" : "no");
		}
	}
	free(rs);
	if (!arr)
		return 0;
	int r = json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(arr);
	printf("\n");
	return r < 0 ? 1 : 0;
}

int ctl_cli_cmd_relays_remove(struct ctl_store *st, const char *name)
{
	if (ctl_store_relay_remove(st, name) < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	fprintf(stderr,
	        "mesh-control: relay %s removed; a running serve disconnects it and "
	        "drops it from every node's map\n",
	        name);
	return 0;
}
