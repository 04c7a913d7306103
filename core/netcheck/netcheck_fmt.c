/* A netcheck report as text and as JSON (see netcheck_fmt.h). The map's
 * names were checked when it was decoded; they are cleaned again here,
 * since a report may come from anywhere. */
#include "core/netcheck/netcheck_fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/sockaddr.h"
#include "core/util/utf8.h"

/* Regions in the order they are shown: fastest first, silent ones last,
 * ties in map order. */
struct fmt_region {
	const char *name;
	size_t first;  /* index of its first relay in the report */
	bool answered; /* some relay of it did */
	uint32_t us;   /* its fastest relay's latency */
};

static bool latency(const struct netcheck_relay_result *r, uint32_t *us)
{
	if (r->udp_ok)
		*us = r->stun_rtt_us;
	else if (r->tcp_ok)
		*us = r->tcp_rtt_us;
	else
		return false;
	return true;
}

static int region_cmp(const void *a, const void *b)
{
	const struct fmt_region *x = a, *y = b;
	if (x->answered != y->answered)
		return x->answered ? -1 : 1;
	if (x->answered && x->us != y->us)
		return x->us < y->us ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* The report's regions, sorted; *n of them. NULL: out of memory (or none). */
static struct fmt_region *regions(const struct netcheck_report *r, size_t *n)
{
	*n = 0;
	struct fmt_region *g = calloc(r->n ? r->n : 1, sizeof *g);
	if (!g)
		return NULL;
	for (size_t i = 0; i < r->n; i++) {
		size_t j = 0;
		while (j < *n && strcmp(g[j].name, r->r[i].region))
			j++;
		if (j == *n) {
			g[j].name = r->r[i].region;
			g[j].first = i;
			(*n)++;
		}
		uint32_t us;
		if (latency(&r->r[i], &us) && (!g[j].answered || us < g[j].us)) {
			g[j].answered = true;
			g[j].us = us;
		}
	}
	qsort(g, *n, sizeof *g, region_cmp);
	return g;
}

static void fmt_ms(uint32_t us, char *out, size_t cap)
{
	double ms = us / 1000.0;
	if (ms < 1)
		snprintf(out, cap, "%.2f ms", ms);
	else if (ms < 100)
		snprintf(out, cap, "%.1f ms", ms);
	else
		snprintf(out, cap, "%.0f ms", ms);
}

static void relay_label(const struct netcheck_relay_result *x, char *out, size_t cap)
{
	if (x->name[0])
		utf8_clean(x->name, out, cap, UTF8_FOR_TERMINAL);
	else
		snprintf(out, cap, "relay %u", (unsigned)x->id);
}

static void host_port(const struct netcheck_relay_result *x, char *out, size_t cap)
{
	char h[NETCHECK_HOST_MAX];
	utf8_clean(x->host, h, sizeof h, UTF8_FOR_TERMINAL);
	snprintf(out, cap, strchr(h, ':') ? "[%s]:%u" : "%s:%u", h, (unsigned)x->port);
}

/* "stun 1.2 ms (sees 198.18.0.1:40213), tcp 0.9 ms", "no answer", ... */
static void relay_detail(const struct netcheck_relay_result *x, char *out, size_t cap)
{
	char a[32], m[64];
	if (!x->resolved) {
		snprintf(out, cap, "its name did not resolve (in time)");
		return;
	}
	if (!x->udp_ok && !x->tcp_ok) {
		snprintf(out, cap, "no answer%s",
		         x->stun_port ? "" : " (TCP; no STUN port)");
		return;
	}
	size_t n = 0;
	out[0] = 0;
	if (!x->stun_port) {
		n += (size_t)snprintf(out, cap, "no STUN port");
	} else if (x->udp_ok) {
		fmt_ms(x->stun_rtt_us, a, sizeof a);
		if (x->has_mapped)
			sockaddr_format(&x->mapped, m, sizeof m);
		n += (size_t)snprintf(out, cap, "stun %s%s%s%s", a,
		                      x->has_mapped ? " (sees " : "",
		                      x->has_mapped ? m : "", x->has_mapped ? ")" : "");
	} else {
		n += (size_t)snprintf(out, cap, "stun no answer");
	}
	if (n >= cap)
		return;
	if (x->tcp_ok) {
		fmt_ms(x->tcp_rtt_us, a, sizeof a);
		snprintf(out + n, cap - n, ", tcp %s", a);
	} else if (x->tcp_tried) {
		snprintf(out + n, cap - n, ", tcp failed");
	}
}

static size_t count_udp(const struct netcheck_report *r, size_t *with_stun)
{
	size_t n = 0;
	*with_stun = 0;
	for (size_t i = 0; i < r->n; i++) {
		n += r->r[i].udp_ok;
		*with_stun += r->r[i].stun_port != 0;
	}
	return n;
}

static void text_head(FILE *f, const struct netcheck_report *r)
{
	char a[64];
	size_t with_stun, answered = count_udp(r, &with_stun);
	if (r->udp)
		fprintf(f, "UDP:            yes (IPv4 %s, IPv6 %s)\n",
		        r->ipv4 ? "yes" : "no", r->ipv6 ? "yes" : "no");
	else if (with_stun)
		fprintf(f,
		        "UDP:            no (no STUN server answered: UDP may be blocked "
		        "here; nodes then reach each other through a relay over TCP)\n");
	else
		fprintf(f, "UDP:            unknown (no relay has a STUN port)\n");
	if (r->global_v4.ss_family) {
		sockaddr_format(&r->global_v4, a, sizeof a);
		fprintf(f, "Public IPv4:    %s\n", a);
	} else {
		fprintf(f, "Public IPv4:    -\n");
	}
	if (r->global_v6.ss_family) {
		sockaddr_format(&r->global_v6, a, sizeof a);
		fprintf(f, "Public IPv6:    %s\n", a);
	}
	if (r->has_mapping_varies && r->mapping_varies)
		fprintf(f, "Mapping varies: yes: a hard NAT (endpoint-dependent "
		           "mapping): direct "
		           "connections need the other side to be easy\n");
	else if (r->has_mapping_varies)
		fprintf(
		    f, "Mapping varies: no (same public address from %zu STUN servers)\n",
		    answered);
	else if (answered == 0)
		fprintf(f, "Mapping varies: unknown (no STUN answer)\n");
	else if (answered == 1)
		fprintf(f, "Mapping varies: unknown (one STUN server answered)\n");
	else
		fprintf(f,
		        "Mapping varies: unknown (the STUN servers that answered share "
		        "one address)\n");
}

static void text_home(FILE *f, const struct netcheck_report *r)
{
	const struct netcheck_relay_result *h = NULL;
	for (size_t i = 0; i < r->n; i++)
		if (r->home_id && r->r[i].id == r->home_id)
			h = &r->r[i];
	if (!h) {
		fprintf(f,
		        "Home relay:     none (no relay answered, over STUN or TCP)\n");
		return;
	}
	char reg[NETCHECK_REGION_MAX], lab[NETCHECK_REGION_MAX + 16], ms[32];
	utf8_clean(h->region, reg, sizeof reg, UTF8_FOR_TERMINAL);
	relay_label(h, lab, sizeof lab);
	fmt_ms(r->home_latency_us, ms, sizeof ms);
	fprintf(f, "Home relay:     %s (%s, %s%s)\n", reg, lab, ms,
	        h->udp_ok ? "" : " over TCP");
}

static void text_regions(FILE *f, const struct netcheck_report *r)
{
	size_t ng;
	struct fmt_region *g = regions(r, &ng);
	if (!g)
		return;
	int w = 8;
	for (size_t j = 0; j < ng; j++)
		if ((int)strlen(g[j].name) > w)
			w = (int)strlen(g[j].name);
	fprintf(f, "Regions:%s\n", ng ? "" : "        none");
	for (size_t j = 0; j < ng; j++) {
		bool first = true;
		for (size_t i = g[j].first; i < r->n; i++) {
			const struct netcheck_relay_result *x = &r->r[i];
			if (strcmp(x->region, g[j].name))
				continue;
			char reg[NETCHECK_REGION_MAX], ms[32] = "-",
			                               lab[NETCHECK_REGION_MAX + 16];
			char hp[NETCHECK_HOST_MAX + 16], det[160];
			utf8_clean(first ? g[j].name : "", reg, sizeof reg,
			           UTF8_FOR_TERMINAL);
			if (first && g[j].answered)
				fmt_ms(g[j].us, ms, sizeof ms);
			else if (!first)
				ms[0] = 0;
			relay_label(x, lab, sizeof lab);
			host_port(x, hp, sizeof hp);
			relay_detail(x, det, sizeof det);
			fprintf(f, "  %-*s   %-8s %s %s %s\n", w, reg, ms, lab, hp, det);
			first = false;
		}
	}
	free(g);
}

char *netcheck_fmt_text(const struct netcheck_report *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	text_head(f, r);
	text_home(f, r);
	text_regions(f, r);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* JSON values; a NULL member makes the whole object NULL (out of memory). */
static json_t *jstr(const char *s)
{
	char c[NETCHECK_HOST_MAX * 3];
	utf8_clean(s, c, sizeof c, UTF8_REPLACE_INVALID);
	return json_string(c);
}

static json_t *jms(bool ok, uint32_t us)
{
	return ok ? json_real(us / 1000.0) : json_null();
}

static json_t *jaddr(const struct sockaddr_storage *ss, bool ok)
{
	char a[64];
	if (!ok || !ss->ss_family)
		return json_null();
	sockaddr_format(ss, a, sizeof a);
	return json_string(a);
}

static json_t *jrelay(const struct netcheck_relay_result *x)
{
	json_t *o = json_pack("{s:I}", "id", (json_int_t)x->id);
	if (o && x->name[0])
		json_object_set_new(o, "name", jstr(x->name));
	if (o &&
	    (json_object_set_new(o, "host", jstr(x->host)) < 0 ||
	     json_object_set_new(o, "port", json_integer(x->port)) < 0 ||
	     json_object_set_new(o, "stun_port",
	                         x->stun_port ? json_integer(x->stun_port)
	                                      : json_null()) < 0 ||
	     json_object_set_new(o, "stun_rtt_ms", jms(x->udp_ok, x->stun_rtt_us)) < 0 ||
	     json_object_set_new(o, "tcp_rtt_ms", jms(x->tcp_ok, x->tcp_rtt_us)) < 0 ||
	     json_object_set_new(o, "mapped", jaddr(&x->mapped, x->has_mapped)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *jregions(const struct netcheck_report *r)
{
	size_t ng;
	struct fmt_region *g = regions(r, &ng);
	json_t *arr = g ? json_array() : NULL;
	for (size_t j = 0; arr && j < ng; j++) {
		json_t *rel = json_array();
		for (size_t i = g[j].first; rel && i < r->n; i++)
			if (!strcmp(r->r[i].region, g[j].name) &&
			    json_array_append_new(rel, jrelay(&r->r[i])) < 0) {
				json_decref(rel);
				rel = NULL;
			}
		json_t *o = rel ? json_pack("{s:o,s:o,s:o}", "region", jstr(g[j].name),
		                            "latency_ms", jms(g[j].answered, g[j].us),
		                            "relays", rel)
		                : NULL;
		if (json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(g);
	return arr;
}

static json_t *jhome(const struct netcheck_report *r)
{
	for (size_t i = 0; r->home_id && i < r->n; i++) {
		const struct netcheck_relay_result *x = &r->r[i];
		if (x->id != r->home_id)
			continue;
		json_t *o = json_pack("{s:I,s:o}", "id", (json_int_t)x->id, "region",
		                      jstr(x->region));
		if (o && x->name[0])
			json_object_set_new(o, "name", jstr(x->name));
		if (o && json_object_set_new(o, "latency_ms",
		                             jms(true, r->home_latency_us)) < 0) {
			json_decref(o);
			return NULL;
		}
		return o;
	}
	return json_null();
}

json_t *netcheck_fmt_json(const struct netcheck_report *r)
{
	json_t *mv =
	    r->has_mapping_varies ? json_boolean(r->mapping_varies) : json_null();
	json_t *ign =
	    json_pack("{s:I,s:I,s:I}", "bad", (json_int_t)r->ignored_bad, "source",
	              (json_int_t)r->ignored_source, "txid", (json_int_t)r->ignored_txid);
	return json_pack("{s:b,s:b,s:b,s:o,s:o,s:o,s:o,s:o,s:o}", "udp", r->udp, "ipv4",
	                 r->ipv4, "ipv6", r->ipv6, "mapping_varies", mv, "global_v4",
	                 jaddr(&r->global_v4, true), "global_v6",
	                 jaddr(&r->global_v6, true), "home", jhome(r), "regions",
	                 jregions(r), "ignored", ign);
}

char *netcheck_fmt_json_text(const struct netcheck_report *r)
{
	json_t *j = netcheck_fmt_json(r);
	if (!j)
		return NULL;
	char *s =
	    json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(j);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return NULL;
	}
	t[n] = '\n';
	t[n + 1] = 0;
	return t;
}
