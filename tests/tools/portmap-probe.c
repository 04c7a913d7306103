/* portmap-probe: the node's port mapper (core/portmap) alone, one protocol
 * at a time, against a real router, for tests/e2e/natlab.sh (each of PCP,
 * NAT-PMP and UPnP against r8's miniupnpd).
 *
 *   portmap-probe --proto pcp|nat-pmp|upnp --port N [--hold S] [--timeout S]
 *
 * Asks the default gateway to map UDP port N with that protocol only,
 * prints "mapped PROTO IP:PORT lease S" once it has a mapping, keeps it for
 * --hold seconds (default 3), then frees the port mapper (which deletes the
 * mapping) and prints "deleted". Exits 1 with the port mapper's reason when
 * no mapping came within --timeout seconds (default 10). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/portmap/portmap.h"

struct probe {
	struct event_base *base;
	struct portmap *pm;
	bool mapped;
	int hold_s;
};

static void on_change(void *ctx)
{
	struct probe *p = ctx;
	struct portmap_status st;
	char d[256];
	portmap_get_status(p->pm, &st);
	if (!st.proto || p->mapped)
		return;
	p->mapped = true;
	portmap_describe(&st, d, sizeof(d));
	const struct sockaddr_in *s = (const struct sockaddr_in *)&st.external;
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
	printf("mapped %s %s:%u lease %u\n", portmap_proto_name(st.proto), ip,
	       ntohs(s->sin_port), st.lease_s);
	fflush(stdout);
	struct timeval tv = {.tv_sec = p->hold_s};
	event_base_loopexit(p->base, &tv);
}

int main(int argc, char **argv)
{
	const char *proto = NULL;
	int port = 0, timeout_s = 10;
	struct probe p = {.hold_s = 3};
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--proto"))
			proto = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--hold"))
			p.hold_s = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--timeout"))
			timeout_s = atoi(argv[i + 1]);
	}
	if (!proto || port <= 0 || port > 65535 ||
	    (strcmp(proto, "pcp") && strcmp(proto, "nat-pmp") && strcmp(proto, "upnp"))) {
		fprintf(stderr, "usage: portmap-probe --proto pcp|nat-pmp|upnp --port N "
		                "[--hold S] [--timeout S]\n");
		return 2;
	}
	p.base = event_base_new();
	struct portmap_config c = {
	    .base = p.base,
	    .port = (uint16_t)port,
	    .on_change = on_change,
	    .ctx = &p,
	    .no_pcp = strcmp(proto, "pcp") != 0,
	    .no_pmp = strcmp(proto, "nat-pmp") != 0,
	    .no_upnp = strcmp(proto, "upnp") != 0,
	};
	char err[160];
	p.pm = portmap_new(&c, err, sizeof(err));
	if (!p.pm) {
		fprintf(stderr, "portmap-probe: %s\n", err);
		return 1;
	}
	struct timeval tv = {.tv_sec = timeout_s};
	event_base_loopexit(p.base, &tv);
	event_base_dispatch(p.base);
	int rc = 0;
	if (!p.mapped) {
		struct portmap_status st;
		char d[256];
		portmap_get_status(p.pm, &st);
		portmap_describe(&st, d, sizeof(d));
		fprintf(stderr, "portmap-probe: no mapping in %d s: %s\n", timeout_s, d);
		rc = 1;
	}
	portmap_free(p.pm);
	if (p.mapped)
		printf("deleted\n");
	event_base_free(p.base);
	return rc;
}
