/* MagicDNS, the service: registered with the netstack at
 * 100.100.100.100:53, answers mesh names with magicdns_answer_kind() and
 * forwards the rest to the first nameserver of /etc/resolv.conf from one
 * non-blocking host UDP socket. Each forwarded query gets a fresh random
 * id; the answer is accepted only from the nameserver's address and port,
 * with that id and the same question, then relayed with the original id.
 * SERVFAIL after the timeout, at once without a nameserver, and when
 * MAGICDNS_FWD_MAX queries are already waiting. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/log.h"
#include "node/dns/magicdns.h"
#include "node/dns/magicdns_int.h"

#define MAGICDNS_TIMEOUT_MS 5000
#define MAGICDNS_RX_BURST   64

struct magicdns_fwd {
	struct magicdns *m;
	bool used;
	uint16_t id; /* the id sent upstream */
	struct ns_addr src;
	uint16_t sport;
	struct event *timer;
	/* The SERVFAIL answer, prebuilt: holds the original id and question. */
	uint8_t fail[MAGICDNS_HDR_LEN + MAGICDNS_QUESTION_MAX];
	size_t fail_len;
};

struct magicdns {
	struct magicdns_config cfg;
	char *domain;
	struct ns_addr svc;
	bool registered;
	struct magicdns_stats st;
	struct sockaddr_storage ns;
	socklen_t ns_len;
	bool have_ns;
	int fd;
	struct event *rd;
	unsigned timeout_ms;
	struct magicdns_fwd fwd[MAGICDNS_FWD_MAX];
	size_t nfwd;
	uint8_t buf[65536];
};

static const char *g_resolv_path;
static uint16_t g_ns_port;
static unsigned g_timeout_ms;

void magicdns_int_set_upstream(const char *resolv_path, uint16_t port,
                               unsigned timeout_ms)
{
	g_resolv_path = resolv_path;
	g_ns_port = port;
	g_timeout_ms = timeout_ms;
}

/* "nameserver ADDR" (IPv6 may carry %scope) into m->ns; true on success. */
static bool parse_ns(struct magicdns *m, char *s, uint16_t port)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&m->ns;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&m->ns;
	memset(&m->ns, 0, sizeof(m->ns));
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		m->ns_len = sizeof(*s4);
		return true;
	}
	char *pct = strchr(s, '%');
	if (pct)
		*pct++ = '\0';
	if (inet_pton(AF_INET6, s, &s6->sin6_addr) != 1)
		return false;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(port);
	if (pct)
		s6->sin6_scope_id = if_nametoindex(pct);
	m->ns_len = sizeof(*s6);
	return true;
}

/* The first usable nameserver line of the resolver configuration. */
static void read_resolv_conf(struct magicdns *m, const char *path, uint16_t port)
{
	FILE *f = fopen(path, "re");
	char line[512];
	if (f == NULL)
		return;
	while (!m->have_ns && fgets(line, sizeof(line), f)) {
		char *save = NULL;
		char *tok = strtok_r(line, " \t\r\n", &save);
		if (tok == NULL || strcmp(tok, "nameserver") != 0)
			continue;
		char *addr = strtok_r(NULL, " \t\r\n#;", &save);
		if (addr && parse_ns(m, addr, port))
			m->have_ns = true;
	}
	fclose(f);
}

static void reply(struct magicdns *m, const struct ns_addr *dst, uint16_t dport,
                  const uint8_t *p, size_t len)
{
	int rc = ns_local_udp_reply(&m->svc, MAGICDNS_PORT, dst, dport, p, len);
	if (rc < 0)
		log_debug("magicdns: reply of %zu bytes failed: %s", len, strerror(-rc));
}

static void fwd_release(struct magicdns_fwd *f)
{
	event_free(f->timer);
	f->timer = NULL;
	f->used = false;
	f->m->nfwd--;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct magicdns_fwd *f = arg;
	struct magicdns *m = f->m;
	m->st.servfail++;
	reply(m, &f->src, f->sport, f->fail, f->fail_len);
	fwd_release(f);
}

static bool id_in_use(const struct magicdns *m, uint16_t id)
{
	for (size_t i = 0; i < MAGICDNS_FWD_MAX; i++)
		if (m->fwd[i].used && m->fwd[i].id == id)
			return true;
	return false;
}

/* 0 when sent upstream; -1 when the caller must answer SERVFAIL. */
static int forward(struct magicdns *m, const struct ns_addr *src, uint16_t sport,
                   const uint8_t *q, size_t len)
{
	struct magicdns_fwd *f = NULL;
	if (!m->have_ns || m->fd < 0 || m->nfwd >= MAGICDNS_FWD_MAX ||
	    len > sizeof(m->buf))
		return -1;
	for (size_t i = 0; i < MAGICDNS_FWD_MAX && f == NULL; i++)
		if (!m->fwd[i].used)
			f = &m->fwd[i];
	if (f == NULL)
		return -1;
	int n = magicdns_error_reply(q, len, MAGICDNS_RCODE_SERVFAIL, true, f->fail,
	                             sizeof(f->fail));
	if (n < 0)
		return -1;
	f->fail_len = (size_t)n;
	uint16_t id;
	do
		id = (uint16_t)randombytes_uniform(65536);
	while (id_in_use(m, id));
	f->timer = evtimer_new(m->cfg.base, on_timeout, f);
	if (f->timer == NULL)
		return -1;
	memcpy(m->buf, q, len);
	m->buf[0] = (uint8_t)(id >> 8);
	m->buf[1] = (uint8_t)id;
	if (sendto(m->fd, m->buf, len, 0, (struct sockaddr *)&m->ns, m->ns_len) < 0) {
		log_debug("magicdns: forward: %s", strerror(errno));
		event_free(f->timer);
		f->timer = NULL;
		return -1;
	}
	struct timeval tv = {m->timeout_ms / 1000, (m->timeout_ms % 1000) * 1000};
	evtimer_add(f->timer, &tv);
	f->m = m;
	f->used = true;
	f->id = id;
	f->src = *src;
	f->sport = sport;
	m->nfwd++;
	m->st.forwarded++;
	return 0;
}

static bool from_ns(const struct magicdns *m, const struct sockaddr_storage *from)
{
	if (from->ss_family != m->ns.ss_family)
		return false;
	if (from->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)from,
		                         *b = (const void *)&m->ns;
		return a->sin_port == b->sin_port &&
		       a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *a = (const void *)from, *b = (const void *)&m->ns;
	return a->sin6_port == b->sin6_port &&
	       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

/* The answer's question equals ours (ASCII case-insensitive, as a
 * resolver may not keep the case); an answer without a question (an error
 * from the resolver) is accepted on its id alone. */
static bool same_question(const struct magicdns_fwd *f, const uint8_t *r, size_t n)
{
	uint16_t qd = (uint16_t)(r[4] << 8 | r[5]);
	size_t ql = f->fail_len - MAGICDNS_HDR_LEN;
	if (qd == 0)
		return (r[3] & 0xf) != 0;
	if (qd != 1 || n - MAGICDNS_HDR_LEN < ql)
		return false;
	for (size_t i = 0; i < ql; i++)
		if (tolower(r[MAGICDNS_HDR_LEN + i]) !=
		    tolower(f->fail[MAGICDNS_HDR_LEN + i]))
			return false;
	return true;
}

static void on_upstream(struct magicdns *m, size_t n)
{
	if (n < MAGICDNS_HDR_LEN || !(m->buf[2] & 0x80))
		return;
	uint16_t id = (uint16_t)(m->buf[0] << 8 | m->buf[1]);
	for (size_t i = 0; i < MAGICDNS_FWD_MAX; i++) {
		struct magicdns_fwd *f = &m->fwd[i];
		if (!f->used || f->id != id)
			continue;
		if (!same_question(f, m->buf, n))
			return;
		m->buf[0] = f->fail[0];
		m->buf[1] = f->fail[1];
		m->st.answered++;
		reply(m, &f->src, f->sport, m->buf, n);
		fwd_release(f);
		return;
	}
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct magicdns *m = arg;
	for (int i = 0; i < MAGICDNS_RX_BURST; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, m->buf, sizeof(m->buf), 0,
		                     (struct sockaddr *)&from, &fl);
		if (n < 0)
			return; /* EAGAIN, or an ICMP error: the timeout answers */
		if (from_ns(m, &from))
			on_upstream(m, (size_t)n);
	}
}

/* A query from the netstack. */
static void on_query(void *ctx, const struct ns_addr *src, uint16_t sport,
                     const uint8_t *data, size_t len)
{
	struct magicdns *m = ctx;
	uint8_t out[MAGICDNS_UDP_MAX];
	enum magicdns_kind kind;
	m->st.queries++;
	int n = magicdns_answer_kind(&m->cfg, data, len, out, sizeof(out), &kind);
	switch (kind) {
	case MAGICDNS_KIND_DROP:
		m->st.dropped++;
		return;
	case MAGICDNS_KIND_FORMERR:
		m->st.formerr++;
		break;
	case MAGICDNS_KIND_NXDOMAIN:
		m->st.nxdomain++;
		break;
	case MAGICDNS_KIND_ANSWER:
		m->st.answered++;
		break;
	case MAGICDNS_KIND_FORWARD:
		if (m->cfg.forward && forward(m, src, sport, data, len) == 0)
			return;
		/* Not forwarding: REFUSED; cannot: SERVFAIL. Both count as servfail. */
		m->st.servfail++;
		n = magicdns_error_reply(data, len,
		                         m->cfg.forward ? MAGICDNS_RCODE_SERVFAIL
		                                        : MAGICDNS_RCODE_REFUSED,
		                         m->cfg.forward, out, sizeof(out));
		break;
	}
	if (n > 0)
		reply(m, src, sport, out, (size_t)n);
}

static int open_upstream(struct magicdns *m, char *err, size_t errlen)
{
	m->fd = socket(m->ns.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0) {
		snprintf(err, errlen, "magicdns: upstream socket: %s", strerror(errno));
		return -1;
	}
	m->rd = event_new(m->cfg.base, m->fd, EV_READ | EV_PERSIST, on_read, m);
	if (m->rd == NULL || event_add(m->rd, NULL) < 0) {
		snprintf(err, errlen, "magicdns: out of memory");
		return -1;
	}
	return 0;
}

struct magicdns *magicdns_new(const struct magicdns_config *cfg, char *err, size_t errlen)
{
	if (cfg == NULL || cfg->base == NULL || cfg->lookup == NULL) {
		snprintf(err, errlen, "magicdns: base and lookup are required");
		return NULL;
	}
	struct magicdns *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, errlen, "magicdns: out of memory");
		return NULL;
	}
	m->cfg = *cfg;
	m->cfg.domain = NULL;
	m->fd = -1;
	m->timeout_ms = g_timeout_ms ? g_timeout_ms : MAGICDNS_TIMEOUT_MS;
	for (size_t i = 0; i < MAGICDNS_FWD_MAX; i++)
		m->fwd[i].m = m;
	if (magicdns_set_domain(m, cfg->domain) < 0) {
		snprintf(err, errlen, "magicdns: out of memory");
		goto fail;
	}
	if (cfg->forward) {
		const char *path = g_resolv_path ? g_resolv_path : "/etc/resolv.conf";
		read_resolv_conf(m, path, g_ns_port ? g_ns_port : 53);
		if (!m->have_ns)
			log_warn(
			    "magicdns: no nameserver in %s: other names get SERVFAIL",
			    path);
		else if (open_upstream(m, err, errlen) < 0)
			goto fail;
	}
	if (!ns_addr_parse(&m->svc, MAGICDNS_ADDR)) {
		snprintf(err, errlen, "magicdns: bad service address");
		goto fail;
	}
	int rc = ns_local_udp_set(&m->svc, MAGICDNS_PORT, on_query, m);
	if (rc < 0) {
		snprintf(err, errlen, "magicdns: cannot serve %s:%d in the netstack: %s",
		         MAGICDNS_ADDR, MAGICDNS_PORT, strerror(-rc));
		goto fail;
	}
	m->registered = true;
	return m;
fail:
	magicdns_free(m);
	return NULL;
}

int magicdns_reload_upstream(struct magicdns *m)
{
	if (m == NULL || !m->cfg.forward)
		return 0;
	const char *path = g_resolv_path ? g_resolv_path : "/etc/resolv.conf";
	int old_family = m->have_ns ? m->ns.ss_family : 0;
	m->have_ns = false;
	read_resolv_conf(m, path, g_ns_port ? g_ns_port : 53);
	/* The socket is not connected: one of the same family serves the new
	 * server (answers from the old one are dropped from now on). */
	if (m->have_ns && m->fd >= 0 && old_family == m->ns.ss_family)
		return 0;
	if (m->rd)
		event_free(m->rd);
	m->rd = NULL;
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	if (!m->have_ns) {
		log_warn("magicdns: no nameserver in %s: other names get SERVFAIL", path);
		return 0;
	}
	char err[160];
	if (open_upstream(m, err, sizeof(err)) < 0) {
		log_warn("%s", err);
		m->have_ns = false;
		return -1;
	}
	return 0;
}

void magicdns_free(struct magicdns *m)
{
	if (m == NULL)
		return;
	if (m->registered)
		ns_local_udp_set(&m->svc, MAGICDNS_PORT, NULL, NULL);
	for (size_t i = 0; i < MAGICDNS_FWD_MAX; i++)
		if (m->fwd[i].used)
			fwd_release(&m->fwd[i]);
	if (m->rd)
		event_free(m->rd);
	if (m->fd >= 0)
		close(m->fd);
	free(m->domain);
	free(m);
}

int magicdns_set_domain(struct magicdns *m, const char *domain)
{
	char *d = NULL;
	if (m == NULL)
		return -EINVAL;
	if (domain && domain[0]) {
		d = strdup(domain);
		if (d == NULL)
			return -ENOMEM;
	}
	free(m->domain);
	m->domain = d;
	m->cfg.domain = d;
	return 0;
}

void magicdns_get_stats(const struct magicdns *m, struct magicdns_stats *st)
{
	if (m == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	*st = m->st;
}
