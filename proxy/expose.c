/* Expose: mesh TCP connections to our own address on a port no front-end
 * listens on are bridged to 127.0.0.1 (same port, or the rule's target),
 * through ns_tcp_listen_any. Each accepted connection gets a non-blocking
 * local connect bounded by HandshakeTimeout, then a splice; a failed
 * connect resets the mesh side (as a closed port would), counted by kind
 * (err_refused for "connection refused"). MaxConnections counts connects
 * in progress and established splices. */
#include "proxy/expose.h"

#include "core/util/log.h"
#include "netstack/ns.h"
#include "proxy/internal.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the spec ---- */

static bool expose_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* Takes a ":pp2" off the end of s[0..*n); false if another ":..." is
 * there. */
static bool expose_options(const char *s, size_t *n, bool *pp2, const char **why)
{
	const char *colon = memchr(s, ':', *n);
	*pp2 = false;
	if (colon == NULL)
		return true;
	size_t rest = *n - (size_t)(colon - s) - 1;
	if (rest != 3 || strncasecmp(colon + 1, "pp2", 3) != 0) {
		*why = "the only option after ':' is pp2 (a PROXY v2 header)";
		return false;
	}
	*pp2 = true;
	*n = (size_t)(colon - s);
	return true;
}

/* One comma-separated item (spaces around it trimmed by the caller). */
static bool expose_item(const char *s, size_t n, struct expose_rule *r, const char **why)
{
	bool pp2;
	memset(r, 0, sizeof(*r));
	if (!expose_options(s, &n, &pp2, why))
		return false;
	r->pp2 = pp2;
	const char *dash = memchr(s, '-', n), *eq = memchr(s, '=', n);

	if (dash != NULL && eq != NULL) {
		*why = "a range maps to the same ports (no \"=\")";
		return false;
	}
	if (eq != NULL) {
		if (!expose_port(s, (size_t)(eq - s), &r->lo) ||
		    !expose_port(eq + 1, n - (size_t)(eq - s) - 1, &r->target)) {
			*why = "want MESHPORT=LOCALPORT, ports 1-65535";
			return false;
		}
		r->hi = r->lo;
		return true;
	}
	if (dash != NULL) {
		if (!expose_port(s, (size_t)(dash - s), &r->lo) ||
		    !expose_port(dash + 1, n - (size_t)(dash - s) - 1, &r->hi)) {
			*why = "want LO-HI, ports 1-65535";
			return false;
		}
		if (r->lo > r->hi) {
			*why = "the range is backwards";
			return false;
		}
		return true;
	}
	if (!expose_port(s, n, &r->lo)) {
		*why = "not a port (1-65535), a range LO-HI, MESH=LOCAL, \"all\" or "
		       "\"none\"";
		return false;
	}
	r->hi = r->lo;
	return true;
}

bool expose_parse(const char *spec, struct expose_spec *out, char *err, size_t errlen)
{
	const char *p, *end, *why = NULL;
	struct expose_rule r;
	size_t n, i;

	memset(out, 0, sizeof(*out));
	if (spec == NULL)
		spec = "";
	if (strcmp(spec, "all") == 0 || strcasecmp(spec, "all:pp2") == 0) {
		out->all = true;
		out->all_pp2 = spec[3] != 0;
		return true;
	}
	if (strcmp(spec, "none") == 0)
		return true;
	for (p = spec;; p = end + 1) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && *p == ' ')
			p++;
		n = (size_t)(end - p);
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n == 0) {
			snprintf(err, errlen, "--expose \"%s\": empty item", spec);
			return false;
		}
		if ((n >= 3 && memcmp(p, "all", 3) == 0 && (n == 3 || p[3] == ':')) ||
		    (n == 4 && memcmp(p, "none", 4) == 0)) {
			snprintf(err, errlen,
			         "--expose \"%s\": \"%.*s\" must stand alone", spec,
			         (int)n, p);
			return false;
		}
		if (!expose_item(p, n, &r, &why)) {
			snprintf(err, errlen, "--expose %.*s: %s", (int)n, p, why);
			return false;
		}
		for (i = 0; i < out->n; i++) {
			if (r.lo <= out->rules[i].hi && out->rules[i].lo <= r.hi) {
				snprintf(err, errlen,
				         "--expose %.*s: port %u is already exposed",
				         (int)n, p,
				         (unsigned)(r.lo > out->rules[i].lo
				                        ? r.lo
				                        : out->rules[i].lo));
				return false;
			}
		}
		if (out->n >= EXPOSE_MAX_RULES) {
			snprintf(err, errlen, "--expose: more than %d items",
			         EXPOSE_MAX_RULES);
			return false;
		}
		out->rules[out->n++] = r;
		if (*end == '\0')
			return true;
	}
}

uint16_t expose_lookup(const struct expose_spec *s, uint16_t port, bool *pp2)
{
	size_t i;

	if (pp2)
		*pp2 = false;
	if (s == NULL || port == 0)
		return 0;
	if (s->all) {
		if (pp2)
			*pp2 = s->all_pp2;
		return port;
	}
	for (i = 0; i < s->n; i++)
		if (port >= s->rules[i].lo && port <= s->rules[i].hi) {
			if (pp2)
				*pp2 = s->rules[i].pp2;
			return s->rules[i].target ? s->rules[i].target : port;
		}
	return 0;
}

bool expose_any(const struct expose_spec *s)
{
	return s && (s->all || s->n > 0);
}

void expose_describe(const struct expose_spec *s, char *buf, size_t len)
{
	size_t i, off = 0;
	int w;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (s == NULL || (!s->all && s->n == 0)) {
		snprintf(buf, len, "none");
		return;
	}
	if (s->all) {
		snprintf(buf, len, s->all_pp2 ? "all:pp2" : "all");
		return;
	}
	for (i = 0; i < s->n && off < len; i++) {
		const struct expose_rule *r = &s->rules[i];
		const char *sep = i ? "," : "";

		if (r->target)
			w = snprintf(buf + off, len - off, "%s%u=%u", sep, r->lo,
			             r->target);
		else if (r->hi != r->lo)
			w = snprintf(buf + off, len - off, "%s%u-%u", sep, r->lo, r->hi);
		else
			w = snprintf(buf + off, len - off, "%s%u", sep, r->lo);
		if (w < 0)
			return;
		off += (size_t)w;
		if (r->pp2 && off < len) {
			w = snprintf(buf + off, len - off, ":pp2");
			if (w < 0)
				return;
			off += (size_t)w;
		}
	}
}

/* ---- the front-end ---- */

struct px_expose {
	struct px_front front;
	struct expose_spec spec;
	struct px_expose_opts opts;
	bool installed;
};

/* The local port for a SYN to our port dport, 0 if it is not exposed or
 * names one of the node's own listeners. */
static uint16_t px_expose_target(const struct px_expose *x, uint16_t dport, bool *pp2)
{
	uint16_t target = expose_lookup(&x->spec, dport, pp2);
	for (size_t i = 0; target && i < x->opts.n_never; i++)
		if (x->opts.never[i] == target)
			return 0;
	return target;
}

static bool px_expose_filter(void *ctx, uint16_t dport)
{
	struct px_expose *x = ctx;
	if (px_expose_target(x, dport, NULL))
		return true;
	if (expose_lookup(&x->spec, dport, NULL))
		x->front.stats.err_denied++; /* exposed by the spec, but ours */
	return false;
}

static void px_expose_on_accept(void *ctx, struct ns_tcp *c, const struct ns_addr *src,
                                uint16_t sport, uint16_t dport)
{
	struct px_expose *x = ctx;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool pp2 = false;
	uint16_t target = px_expose_target(x, dport, &pp2);

	x->front.stats.accepted++;
	if (target == 0) { /* the filter said yes a moment ago: cannot happen */
		ns_tcp_abort(c);
		return;
	}
	if (px_front_open(&x->front) + x->front.stats.pending >=
	    x->front.lim.max_connections) {
		x->front.stats.err_limit++;
		ns_tcp_abort(c);
		return;
	}
	if (x->opts.on_conn)
		x->opts.on_conn(x->opts.ctx, src, dport, target);
	uint8_t hdr[PX_PROXYV2_MAX];
	size_t hdr_len = 0;
	if (pp2) {
		struct ns_addr dst;
		uint16_t lport = dport;
		memset(&dst, 0, sizeof(dst));
		ns_tcp_local(c, &dst, &lport);
		if (dst.family != src->family)
			dst.family = src->family;
		hdr_len = px_proxyv2_for(&x->front.env, hdr, sizeof(hdr), src, sport, &dst,
		                         lport);
	}
	sa.sin_port = htons(target);
	px_local_dial(&x->front, c, (struct sockaddr *)&sa, sizeof(sa), hdr, hdr_len,
	              "expose");
}

struct px_expose *px_expose_new(const struct px_env *env, const struct expose_spec *spec,
                                const struct cfg_limits *limits,
                                const struct px_expose_opts *opts, char *err,
                                size_t errlen)
{
	struct px_expose *x = calloc(1, sizeof(*x));
	int r;

	if (x == NULL ||
	    px_front_init(&x->front, env, "expose", limits, CFG_DIRECT_NO) < 0) {
		free(x);
		snprintf(err, errlen, "expose: out of memory");
		return NULL;
	}
	if (spec != NULL)
		x->spec = *spec;
	if (opts != NULL)
		x->opts = *opts;
	if (!expose_any(&x->spec))
		return x; /* exposes nothing: no handler */
	r = ns_tcp_listen_any(px_expose_filter, px_expose_on_accept, x);
	if (r < 0) {
		snprintf(err, errlen, "expose: %s", strerror(-r));
		px_expose_free(x);
		return NULL;
	}
	x->installed = true;
	return x;
}
void px_expose_free(struct px_expose *x)
{
	if (x == NULL)
		return;
	if (x->installed)
		ns_tcp_listen_any(NULL, NULL, NULL);
	px_local_dial_abort_all(&x->front);
	px_front_fini(&x->front);
	free(x);
}

void px_expose_get_stats(const struct px_expose *x, struct px_stats *st)
{
	if (x == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	px_front_stats(&x->front, st);
}
