/* mesh-proxy netcheck: the relay map from DIR/netmap.json, one netcheck
 * run with its own sockets, the report on stdout. Meanwhile a thread asks
 * the router which port-mapping protocols it speaks (portmap_probe_blocking
 * blocks; the loop runs netcheck), joined before the report is printed. */
#include "cli/netcheck.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/paths.h"
#include "core/netcheck/netcheck.h"
#include "core/netcheck/netcheck_fmt.h"
#include "core/portmap/portmap.h"
#include "node/state.h"

#define NC_CLI_TIMEOUT_MIN 100
#define NC_CLI_TIMEOUT_MAX 60000

struct nc_cli {
	struct event_base *base;
	bool json;
	int rc;
	char *report; /* the formatted report, printed after the probe ends */
	struct portmap_probe probe;
};

static void *probe_thread(void *arg)
{
	struct nc_cli *c = arg;
	struct portmap_config pc = {0};
	portmap_probe_blocking(&pc, &c->probe);
	return NULL;
}

/* The report with the port-mapping line (text) or "portmap" (JSON). */
static void print_report(struct nc_cli *c)
{
	const struct portmap_probe *p = &c->probe;
	if (!c->json) {
		char d[160];
		portmap_probe_describe(p, d, sizeof(d));
		fputs(c->report, stdout);
		printf("Port mapping:   %s\n", d);
		return;
	}
	json_t *j = json_loads(c->report, 0, NULL), *o = json_object();
	if (!j || !o) {
		json_decref(j);
		json_decref(o);
		fputs(c->report, stdout);
		return;
	}
	json_object_set_new(o, "pcp", json_boolean(p->pcp));
	json_object_set_new(o, "nat_pmp", json_boolean(p->pmp));
	json_object_set_new(o, "upnp", json_boolean(p->upnp));
	json_object_set_new(o, "gateway", p->gateway[0] ? json_string(p->gateway) : json_null());
	json_object_set_new(o, "external_v4",
	                    p->pmp_ext[0]    ? json_string(p->pmp_ext)
	                    : p->upnp_ext[0] ? json_string(p->upnp_ext)
	                                     : json_null());
	json_object_set_new(j, "portmap", o);
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(j);
	if (s) {
		printf("%s\n", s);
		free(s);
	} else {
		fputs(c->report, stdout);
	}
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-proxy netcheck: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr,
	        "\nusage: mesh-proxy netcheck [--state DIR] [--json] [--timeout MS]\n");
	return 2;
}

static void done_cb(void *ctx, const struct netcheck_report *r)
{
	struct nc_cli *c = ctx;
	c->report = c->json ? netcheck_fmt_json_text(r) : netcheck_fmt_text(r);
	if (!c->report) {
		fprintf(stderr, "mesh-proxy netcheck: out of memory\n");
		c->rc = 1;
	}
	event_base_loopbreak(c->base);
}

/* The map's relays, or -1 after saying what to do. */
static int load_relays(const char *dir, struct netcheck_relay **out, size_t *n)
{
	struct ctl_msg m;
	char err[600];
	int r = node_state_load_map(dir, &m, err, sizeof err);
	if (r == -ENOENT) {
		fprintf(
		    stderr,
		    "mesh-proxy netcheck: %s has no network map yet: join a mesh first "
		    "(mesh-proxy up --join TOKEN --state %s), or name the node's "
		    "directory with --state DIR\n",
		    dir, dir);
		return -1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-proxy netcheck: %s%s\n", err,
		        r == -EACCES ? " (run it as the user that runs the node)" : "");
		ctl_msg_free(&m);
		return -1;
	}
	const struct ctl_map_full *map = &m.u.map;
	if (map->n_relays == 0) {
		fprintf(
		    stderr,
		    "mesh-proxy netcheck: the mesh's network map (%s/netmap.json) lists "
		    "no relay; ask the mesh's admin to add one (mesh-control token "
		    "--relay, then mesh-relay up --join TOKEN --listen ADDR:PORT --stun "
		    "ADDR:PORT)\n",
		    dir);
		ctl_msg_free(&m);
		return -1;
	}
	*n = map->n_relays < NETCHECK_RELAYS_MAX ? map->n_relays : NETCHECK_RELAYS_MAX;
	*out = calloc(*n, sizeof **out);
	if (!*out) {
		fprintf(stderr, "mesh-proxy netcheck: out of memory\n");
		ctl_msg_free(&m);
		return -1;
	}
	for (size_t i = 0; i < *n; i++) {
		const struct ctl_relay *cr = &map->relays[i];
		struct netcheck_relay *x = &(*out)[i];
		x->id = cr->id;
		snprintf(x->region, sizeof x->region, "%s", cr->region);
		snprintf(x->name, sizeof x->name, "%s", cr->name);
		snprintf(x->host, sizeof x->host, "%s", cr->host);
		x->port = cr->port;
		x->stun_port = cr->stun_port;
		x->tls = cr->tls;
	}
	ctl_msg_free(&m);
	return 0;
}

static int run(const char *dir, bool json, unsigned timeout_ms)
{
	struct netcheck_relay *relays = NULL;
	size_t n = 0;
	if (load_relays(dir, &relays, &n) < 0)
		return 1;
	struct nc_cli c = {.json = json, .rc = 1};
	c.base = event_base_new();
	struct evdns_base *dns =
	    c.base ? evdns_base_new(c.base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
	if (c.base && !dns) /* no resolv.conf: names fail, literals work */
		dns = evdns_base_new(c.base, 0);
	if (!c.base || !dns) {
		fprintf(stderr, "mesh-proxy netcheck: cannot set up the event loop\n");
		free(relays);
		if (c.base)
			event_base_free(c.base);
		return 1;
	}
	char err[256];
	struct netcheck_config cfg = {.base = c.base,
	                              .dns = dns,
	                              .relays = relays,
	                              .n_relays = n,
	                              .timeout_ms = timeout_ms,
	                              .tcp_always = true,
	                              .done = done_cb,
	                              .ctx = &c};
	pthread_t th;
	bool probing = pthread_create(&th, NULL, probe_thread, &c) == 0;
	struct netcheck *nc = netcheck_start(&cfg, err, sizeof err);
	free(relays);
	if (!nc) {
		fprintf(stderr, "mesh-proxy %s\n", err);
	} else {
		event_base_dispatch(c.base);
		netcheck_free(nc);
		/* Cancelled name lookups call back once more; let them. */
		event_base_loop(c.base, EVLOOP_NONBLOCK);
	}
	if (probing)
		pthread_join(th, NULL); /* about 5.5 s at most (UPnP is killed at 4 s) */
	if (c.report) {
		print_report(&c);
		free(c.report);
		c.rc = fflush(stdout) == 0 ? 0 : 1;
	}
	evdns_base_free(dns, 0);
	event_base_free(c.base);
	return c.rc;
}

int cli_netcheck(int argc, char **argv)
{
	const char *state = NULL;
	bool json = false;
	unsigned long timeout_ms = NETCHECK_TIMEOUT_MS;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		if (!strcmp(a, "--state") || !strcmp(a, "--timeout")) {
			if (i + 1 >= argc)
				return usage_error("%s needs a value", a);
			val = argv[++i];
		} else if (!strncmp(a, "--state=", 8)) {
			a = "--state", val = argv[i] + 8;
		} else if (!strncmp(a, "--timeout=", 10)) {
			a = "--timeout", val = argv[i] + 10;
		}
		if (!strcmp(a, "--state")) {
			state = val;
		} else if (!strcmp(a, "--timeout")) {
			char *end;
			timeout_ms = strtoul(val, &end, 10);
			if (*end || end == val || val[0] == '-' ||
			    timeout_ms < NC_CLI_TIMEOUT_MIN ||
			    timeout_ms > NC_CLI_TIMEOUT_MAX)
				return usage_error(
				    "--timeout %s: milliseconds, 100-60000", val);
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else {
			return usage_error(a[0] == '-' ? "unknown option %s"
			                               : "unexpected argument %s",
			                   a);
		}
	}
	static char def[512];
	if (!state) {
		char err[512];
		if (cli_state_default(def, sizeof def, err, sizeof err) != 0) {
			fprintf(stderr,
			        "mesh-proxy netcheck: %s; name the node's directory "
			        "with --state DIR\n",
			        err);
			return 1;
		}
		state = def;
	}
	return run(state, json, (unsigned)timeout_ms);
}
