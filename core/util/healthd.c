/* The health listener; see healthd.h. evhttp parses the requests; we only
 * look at the method and the path. */
#include "core/util/healthd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util/http_conns.h"
#include "core/util/log.h"
#include "core/util/procmetrics.h"
#include "core/util/prom.h"
#include "core/util/sockaddr.h"

/* Families whose refused lines were logged (once each). */
#define HEALTHD_WARNED_MAX 32

struct healthd {
	struct evhttp *http;
	struct http_conns *conns;
	struct healthd_ops ops;
	struct healthd_stats st;
	char what[48];
	char prefix[48]; /* of the program's metric names: "meshproxy" */
	unsigned long long refused;
	char *warned[HEALTHD_WARNED_MAX];
	size_t n_warned;
};

static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5)
		return -1;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int healthd_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                         char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = s ? strrchr(s, ':') : NULL;
	uint16_t port;
	memset(ss, 0, sizeof(*ss));
	if (!colon || (size_t)(colon - s) >= sizeof(host) || parse_port(colon + 1, &port))
		goto bad;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		host[hl - 1] = 0;
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
			goto bad;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		*len = sizeof(*a);
		return 0;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		goto bad;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	*len = sizeof(*a);
	return 0;
bad:
	snprintf(err, errlen,
	         "--health-listen \"%.64s\": give ADDR:PORT with a numeric address, "
	         "e.g. 127.0.0.1:9090, 0.0.0.0:9090 or [::1]:9090",
	         s ? s : "");
	return -1;
}

/* libevent 2.1 writes a reply's body even to HEAD, which would corrupt a
 * kept-alive connection: for HEAD only the length goes out. */
static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *type, const char *body, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
	struct evbuffer *b = head ? NULL : evbuffer_new();
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (head) {
		char n[24];
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(h, "Content-Length", n);
	}
	if (b)
		evbuffer_add(b, body, len);
	evhttp_send_reply(req, code, reason, b);
	if (b)
		evbuffer_free(b);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *text)
{
	reply(req, code, reason, "text/plain; charset=utf-8", text, strlen(text));
}

static void serve_readyz(struct healthd *h, struct evhttp_request *req)
{
	char why[HEALTHD_WHY_MAX], line[HEALTHD_WHY_MAX + 16];
	why[0] = 0;
	if (h->ops.ready(h->ops.ctx, why, sizeof(why))) {
		reply_text(req, 200, "OK", "ready\n");
		return;
	}
	snprintf(line, sizeof(line), "not ready: %s\n", why[0] ? why : "unknown");
	reply_text(req, 503, "Service Unavailable", line);
}

/* A metric line the writer refused is a bug of ours that drops data a
 * dashboard expects: warn once per family (a scraper calls every few
 * seconds), and count every one. */
static void on_refuse(void *arg, const char *family)
{
	struct healthd *h = arg;
	h->refused++;
	for (size_t i = 0; i < h->n_warned; i++)
		if (!strcmp(h->warned[i], family))
			return;
	if (h->n_warned < HEALTHD_WARNED_MAX) {
		char *c = strdup(family);
		if (c)
			h->warned[h->n_warned++] = c;
	}
	log_warn("%s: /metrics: a line of %.128s was refused (not valid Prometheus "
	         "text; a bug, please report it); counted in %s_metrics_refused_total",
	         h->what, family, h->prefix);
}

static void write_refused(struct healthd *h, struct prom *p)
{
	char name[PROM_NAME_MAX];
	snprintf(name, sizeof(name), "%s_metrics_refused_total", h->prefix);
	p->on_refuse = NULL; /* this one's refusal would recurse into the count */
	prom_counter(p, name,
	             "Metric lines the /metrics writer refused (a bug; the log names "
	             "the family).",
	             h->refused);
}

static void serve_metrics(struct healthd *h, struct evhttp_request *req)
{
	struct prom p;
	prom_init(&p);
	p.on_refuse = on_refuse;
	p.refuse_ctx = h;
	h->ops.metrics(h->ops.ctx, &p);
	procmetrics_write(&p, h->what); /* the same for all three programs */
	write_refused(h, &p);
	if (p.oom || !p.buf)
		reply_text(req, 500, "Internal Server Error",
		           "metrics: out of memory; try again\n");
	else
		reply(req, 200, "OK", PROM_CONTENT_TYPE, p.buf, p.len);
	prom_free(&p);
}

/* The path without a query: "/readyz?verbose" is /readyz. */
static bool path_is(const char *uri, const char *path)
{
	size_t n = strlen(path);
	return strncmp(uri, path, n) == 0 && (uri[n] == 0 || uri[n] == '?');
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct healthd *h = arg;
	struct evhttp_connection *hc = evhttp_request_get_connection(req);
	struct bufferevent *bev = hc ? evhttp_connection_get_bufferevent(hc) : NULL;
	if (bev) /* its deadline for the next request starts again */
		http_conns_served(h->conns, (int)bufferevent_getfd(bev));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *uri = evhttp_request_get_uri(req);
	if (!uri)
		uri = "";
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		h->st.other++;
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		                  "GET, HEAD");
		reply_text(req, 405, "Method Not Allowed",
		           "method not allowed: use GET or HEAD\n");
	} else if (path_is(uri, "/livez")) {
		h->st.livez++;
		reply_text(req, 200, "OK", "ok\n");
	} else if (path_is(uri, "/readyz")) {
		h->st.readyz++;
		serve_readyz(h, req);
	} else if (path_is(uri, "/metrics")) {
		h->st.metrics++;
		serve_metrics(h, req);
	} else {
		h->st.other++;
		reply_text(req, 404, "Not Found",
		           "not found: the paths are /livez, /readyz and /metrics\n");
	}
}

/* The health listener's accept queue: a flood fills it later (a kubelet's
 * SYN is dropped only when it is full), and a probe waits in it behind at
 * most this many, accepted HEALTHD_MAX_CONNS at a time (see http_conns.h). */
#define HEALTHD_BACKLOG 1024

static int bind_socket(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 ||
	    listen(fd, HEALTHD_BACKLOG) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

struct healthd *healthd_new(struct event_base *base, const char *listen, const char *what,
                            const struct healthd_ops *ops, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (healthd_parse_listen(listen, &ss, &len, err, errlen) != 0)
		return NULL;
	struct healthd *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "--health-listen: out of memory");
		return NULL;
	}
	h->ops = *ops;
	snprintf(h->what, sizeof(h->what), "%s", what);
	size_t k = 0; /* "mesh-proxy" -> "meshproxy" */
	for (const char *c = what; *c && k + 1 < sizeof(h->prefix); c++)
		if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')
			h->prefix[k++] = *c;
	h->prefix[k] = 0;
	int fd = bind_socket(&ss, len);
	if (fd < 0) {
		snprintf(err, errlen, "--health-listen %s: %s%s", listen, strerror(-fd),
		         fd == -EADDRINUSE
		             ? " (another process uses the port; pick another)"
		         : fd == -EADDRNOTAVAIL ? " (no interface has this address)"
		                                : "");
		free(h);
		return NULL;
	}
	char name[80];
	snprintf(name, sizeof(name), "%s: health listener", what);
	h->http = evhttp_new(base);
	struct evhttp_bound_socket *bound =
	    h->http ? evhttp_accept_socket_with_handle(h->http, fd) : NULL;
	if (bound)
		h->conns = http_conns_new(base, evhttp_bound_socket_get_listener(bound),
		                          HEALTHD_MAX_CONNS, name);
	if (!h->http || !bound || !h->conns) {
		snprintf(err, errlen, "--health-listen %s: cannot start the HTTP server",
		         listen);
		if (!bound)
			close(fd);
		healthd_free(h);
		return NULL;
	}
	evhttp_set_bevcb(h->http, http_conns_bevcb, h->conns);
	/* Every method reaches us, so that the others get 405, not 501. */
	evhttp_set_allowed_methods(
	    h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                 EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(h->http, HEALTHD_MAX_BODY);
	evhttp_set_max_headers_size(h->http, HEALTHD_MAX_HEADER);
	evhttp_set_timeout(h->http, HEALTHD_TIMEOUT_S);
	http_conns_set_write_timeout(h->conns, HEALTHD_TIMEOUT_S);
	http_conns_set_probe_mode(h->conns);
	evhttp_set_gencb(h->http, on_request, h);
	char a[80];
	sockaddr_format(&ss, a, sizeof(a));
	log_info("%s: health listener on http://%s (/livez /readyz /metrics)", what, a);
	return h;
}

void healthd_free(struct healthd *h)
{
	if (!h)
		return;
	http_conns_free(h->conns);
	if (h->http)
		evhttp_free(h->http);
	for (size_t i = 0; i < h->n_warned; i++)
		free(h->warned[i]);
	free(h);
}

void healthd_get_stats(const struct healthd *h, struct healthd_stats *st)
{
	if (h)
		*st = h->st;
	else
		memset(st, 0, sizeof(*st));
}

struct http_conns *healthd_conns(struct healthd *h)
{
	return h->conns;
}
