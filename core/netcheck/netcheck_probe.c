/* netcheck's probes: its own UDP sockets (when the node lends none), STUN
 * Binding requests out and their answers in, and the TCP connect timer. */
#include "core/netcheck/netcheck_int.h"
#include "core/util/sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Answers read per wake-up of one socket before other events get a turn. */
#define NC_READ_BATCH 64

/* An IPv4 address seen through a dual-stack IPv6 socket, as IPv4. */
static void addr_normalise(const struct sockaddr *in, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (in->sa_family == AF_INET) {
		memcpy(out, in, sizeof(struct sockaddr_in));
	} else if (in->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)in;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)out;
			s4->sin_family = AF_INET;
			s4->sin_port = s6->sin6_port;
			memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			memcpy(out, in, sizeof(struct sockaddr_in6));
		}
	}
}

/* A mapped address worth reporting as ours: the family of the server we
 * asked (a v6 answer to a v4 probe is nonsense), a port, and not an
 * unspecified or multicast address (review L5). Loopback passes: tests,
 * and a relay on this host, see it. */
static bool mapped_ok(const struct stun_addr *a, int family)
{
	static const uint8_t zero[16] = {0};
	if (a->port == 0)
		return false;
	if (a->family == 4)
		return family == AF_INET && memcmp(a->addr, zero, 4) != 0 &&
		       (a->addr[0] & 0xf0) != 0xe0 && /* 224/4 multicast */
		       !(a->addr[0] == 255 && a->addr[1] == 255 && a->addr[2] == 255 &&
		         a->addr[3] == 255);
	if (a->family == 6)
		return family == AF_INET6 && memcmp(a->addr, zero, 16) != 0 &&
		       a->addr[0] != 0xff; /* ff00::/8 multicast */
	return false;
}

static void stun_to_sockaddr(const struct stun_addr *a, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (a->family == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		memcpy(&s4->sin_addr, a->addr, 4);
	} else if (a->family == 6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a->port);
		memcpy(&s6->sin6_addr, a->addr, 16);
	}
}

static void read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct netcheck *nc = arg;
	uint8_t buf[STUN_MAX_MSG + 1];
	for (int i = 0; i < NC_READ_BATCH; i++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n =
		    recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if ((size_t)n > STUN_MAX_MSG) {
			nc->rep.ignored_bad++;
			continue;
		}
		nc_stun_answer(nc, buf, (size_t)n, (const struct sockaddr *)&from);
	}
}

static int open_one(struct netcheck *nc, int f)
{
	int fam = f == NC_V4 ? AF_INET : AF_INET6;
	int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_storage ss = {.ss_family = (sa_family_t)fam};
	socklen_t len = sizeof(struct sockaddr_in);
	if (fam == AF_INET6) {
		int one = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		len = sizeof(struct sockaddr_in6);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	nc->read_ev[f] = event_new(nc->cfg.base, fd, EV_READ | EV_PERSIST, read_cb, nc);
	if (!nc->read_ev[f] || event_add(nc->read_ev[f], NULL) < 0) {
		close(fd);
		return -ENOMEM;
	}
	nc->fd[f] = fd;
	nc->can[f] = true;
	return 0;
}

/* One UDP socket per family on an ephemeral port, so every server sees
 * the same source (what makes mapping_varies meaningful). A host without
 * IPv6 probes IPv4 only; one without either has nothing to probe with. */
int nc_sockets_open(struct netcheck *nc, char *err, size_t errlen)
{
	int r4 = open_one(nc, NC_V4);
	int r6 = open_one(nc, NC_V6);
	if (r4 < 0 && r6 < 0) {
		snprintf(err, errlen, "netcheck: cannot open a UDP socket: %s",
		         strerror(-r4));
		return r4;
	}
	return 0;
}

void nc_sockets_close(struct netcheck *nc)
{
	for (int f = 0; f < NC_FAMILIES; f++) {
		if (nc->read_ev[f])
			event_free(nc->read_ev[f]);
		nc->read_ev[f] = NULL;
		if (nc->fd[f] >= 0)
			close(nc->fd[f]);
		nc->fd[f] = -1;
	}
}

void nc_stun_send(struct netcheck *nc, struct nc_relay *rl, struct nc_target *t)
{
	int f = t == &rl->t[NC_V4] ? NC_V4 : NC_V6;
	uint8_t *txid = t->txid[t->n_sent];
	uint8_t req[64];
	randombytes_buf(txid, STUN_TXID_LEN);
	size_t len = stun_binding_request(req, sizeof req, txid, NULL);
	int r;
	if (nc->cfg.send) {
		r = nc->cfg.send(nc->cfg.send_ctx, (const struct sockaddr *)&t->addr,
		                 t->alen, req, len);
	} else {
		ssize_t n = sendto(nc->fd[f], req, len, 0,
		                   (const struct sockaddr *)&t->addr, t->alen);
		r = n < 0 ? -errno : 0;
	}
	t->sent_us[t->n_sent] = nc_now_us();
	t->n_sent++;
	if (r == -EAFNOSUPPORT)
		nc->can[f] = false;
	/* A full buffer loses this probe (the next may pass); no route or
	 * no family for this address: nothing will answer. */
	if (r < 0 && r != -EAGAIN && r != -ENOBUFS && r != -EINTR)
		t->dead = t->n_answered == 0;
}

/* Finds the probe that m answers: sent to from, with m's transaction id,
 * not answered yet. *known tells whether from is a server we asked. */
static struct nc_target *find_probe(struct netcheck *nc, const struct stun_msg *m,
                                    const struct sockaddr_storage *from, int *k,
                                    struct nc_relay **out, bool *known)
{
	*known = false;
	for (size_t i = 0; i < nc->n; i++) {
		struct nc_relay *rl = &nc->rl[i];
		for (int f = 0; f < NC_FAMILIES; f++) {
			struct nc_target *t = &rl->t[f];
			if (!t->active || !sockaddr_equal(&t->addr, from))
				continue;
			*known = true;
			for (int j = 0; j < t->n_sent; j++)
				if (!t->answered[j] &&
				    !sodium_memcmp(t->txid[j], m->id + 4,
				                   STUN_TXID_LEN)) {
					*k = j;
					*out = rl;
					return t;
				}
		}
	}
	return NULL;
}

bool nc_stun_answer(struct netcheck *nc, const uint8_t *p, size_t len,
                    const struct sockaddr *from)
{
	struct stun_msg m;
	if (stun_parse(p, len, &m) < 0 || m.classic || m.type != STUN_BINDING_SUCCESS ||
	    (m.has_fingerprint && !m.fingerprint_ok) || !m.has_mapped) {
		nc->rep.ignored_bad++;
		return false;
	}
	struct sockaddr_storage src;
	addr_normalise(from, &src);
	if (!mapped_ok(&m.mapped, src.ss_family)) {
		nc->rep.ignored_bad++;
		return false;
	}
	bool known;
	int k = 0;
	struct nc_relay *rl = NULL;
	struct nc_target *t =
	    nc->finished ? NULL : find_probe(nc, &m, &src, &k, &rl, &known);
	if (!t) {
		if (!nc->finished && !known)
			nc->rep.ignored_source++;
		else
			nc->rep.ignored_txid++;
		return false;
	}
	uint64_t now = nc_now_us();
	uint64_t rtt = now > t->sent_us[k] ? now - t->sent_us[k] : 1;
	if (rtt > UINT32_MAX)
		rtt = UINT32_MAX;
	t->answered[k] = true;
	t->n_answered++;
	if (!t->best_us || rtt < t->best_us)
		t->best_us = (uint32_t)rtt;
	t->dead = false;
	stun_to_sockaddr(&m.mapped, &t->mapped);
	t->has_mapped = true;
	nc_relay_poke(nc, rl);
	return true;
}

static void tcp_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct nc_relay *rl = arg;
	int e = 0;
	socklen_t el = sizeof e;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
		e = errno;
	uint64_t now = nc_now_us();
	nc_tcp_stop(rl);
	if (e) {
		rl->tcp = NC_TCP_FAILED;
	} else {
		uint64_t d = now > rl->tcp_start_us ? now - rl->tcp_start_us : 1;
		rl->tcp_rtt_us = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		rl->tcp = NC_TCP_OK;
	}
	nc_relay_poke(rl->nc, rl);
}

/* A plain connect to host:port (IPv4 if it has one); the time until the
 * handshake completes is the TCP latency. */
void nc_tcp_start(struct netcheck *nc, struct nc_relay *rl)
{
	if (rl->tcp != NC_TCP_NONE)
		return;
	rl->tcp = NC_TCP_FAILED;
	struct sockaddr_storage ss;
	socklen_t len;
	if (rl->ip[NC_V4].ss_family == AF_INET) {
		ss = rl->ip[NC_V4];
		((struct sockaddr_in *)&ss)->sin_port = htons(rl->cfg.port);
		len = sizeof(struct sockaddr_in);
	} else if (rl->ip[NC_V6].ss_family == AF_INET6) {
		ss = rl->ip[NC_V6];
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(rl->cfg.port);
		len = sizeof(struct sockaddr_in6);
	} else {
		return;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	rl->tcp_start_us = nc_now_us();
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		close(fd);
		return;
	}
	/* Even an immediate connect is reported from the loop. */
	rl->tcp_ev = event_new(nc->cfg.base, fd, EV_WRITE, tcp_cb, rl);
	if (!rl->tcp_ev || event_add(rl->tcp_ev, NULL) < 0) {
		if (rl->tcp_ev)
			event_free(rl->tcp_ev);
		rl->tcp_ev = NULL;
		close(fd);
		return;
	}
	rl->tcp_fd = fd;
	rl->tcp = NC_TCP_RUNNING;
}

void nc_tcp_stop(struct nc_relay *rl)
{
	if (rl->tcp_ev)
		event_free(rl->tcp_ev);
	rl->tcp_ev = NULL;
	if (rl->tcp_fd >= 0)
		close(rl->tcp_fd);
	rl->tcp_fd = -1;
	if (rl->tcp == NC_TCP_RUNNING)
		rl->tcp = NC_TCP_FAILED;
}
