/* mesh-relay's STUN server: answers Binding requests on a UDP socket with
 * the address they came from (XOR-MAPPED-ADDRESS; MAPPED-ADDRESS for a
 * classic RFC 3489 request). Requests that ask for a changed address or
 * port (RFC 3489 / 5780 CHANGE-REQUEST) are not answered: this server has
 * one address. Anything that is not a well-formed request is dropped and
 * counted, and so is a request with a comprehension-required attribute we
 * do not know (no 420 error: an answer larger than the request would help
 * a spoofed-source flood).
 *
 * A response is larger than its request (40 bytes to 20 for IPv4), so a
 * spoofed source could point answers at a victim: answers are rate-limited
 * per source prefix (IPv4 /24, IPv6 /48: STUN_PREFIX_RATE a second, bursts
 * of STUN_PREFIX_BURST) and for the whole server (STUN_ALL_RATE); requests
 * over the limit are dropped and counted (stun_limited). A node asks a
 * handful of times a minute. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/stun/stun.h"
#include "core/util/log.h"
#include "servers/relay/relay_int.h"

#define STUN_PREFIX_RATE  10u
#define STUN_PREFIX_BURST 20u
#define STUN_ALL_RATE     20000u
#define STUN_ALL_BURST    20000u

/* Takes one answer from b (refilled at rate a second up to burst). */
static bool bucket_take(struct rly_bucket *b, uint64_t now, uint32_t rate, uint32_t burst)
{
	uint64_t t = b->tokens_milli;
	if (b->last_ms == 0)
		t = (uint64_t)burst * 1000u;
	else
		t += (now - b->last_ms) * rate;
	if (t > (uint64_t)burst * 1000u)
		t = (uint64_t)burst * 1000u;
	b->last_ms = now ? now : 1;
	if (t < 1000u) {
		b->tokens_milli = (uint32_t)t;
		return false;
	}
	b->tokens_milli = (uint32_t)(t - 1000u);
	return true;
}

/* The source's prefix slot: IPv4 (or v4-mapped) /24, IPv6 /48. */
static uint16_t prefix_slot(const struct rly_server *s,
                            const struct sockaddr_storage *from)
{
	uint8_t a[8] = {0}, h[crypto_shorthash_BYTES];
	size_t n = 0;
	if (from->ss_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)from)->sin_addr, 3);
		n = 3;
	} else if (from->ss_family == AF_INET6) {
		const struct in6_addr *v6 =
		    &((const struct sockaddr_in6 *)from)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(v6)) {
			memcpy(a, v6->s6_addr + 12, 3);
			n = 3;
		} else {
			a[0] = 6;
			memcpy(a + 1, v6->s6_addr, 6);
			n = 7;
		}
	}
	crypto_shorthash(h, a, n, s->ip_hash_key);
	return (uint16_t)((h[0] | h[1] << 8) % RLY_IP_SLOTS);
}

static void answer(struct rly_server *s, int fd, const uint8_t *p, size_t n,
                   const struct sockaddr_storage *from, socklen_t flen)
{
	struct stun_msg m;
	if (stun_parse(p, n, &m) < 0 || m.type != STUN_BINDING_REQUEST ||
	    (m.has_fingerprint && !m.fingerprint_ok) || m.change_flags) {
		s->st.stun_bad++;
		return;
	}
	if (m.unknown_required) {
		s->st.stun_bad++;
		return;
	}
	s->st.stun_requests++;
	uint64_t now = rly_now_ms();
	if (!bucket_take(&s->stun_prefix[prefix_slot(s, from)], now, STUN_PREFIX_RATE,
	                 STUN_PREFIX_BURST) ||
	    !bucket_take(&s->stun_all, now, STUN_ALL_RATE, STUN_ALL_BURST)) {
		s->st.stun_limited++;
		return;
	}
	uint8_t out[256];
	size_t on;
	{
		struct stun_addr a = {0};
		if (from->ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)from;
			a.family = 4;
			a.port = ntohs(sin->sin_port);
			memcpy(a.addr, &sin->sin_addr, 4);
		} else {
			const struct sockaddr_in6 *sin6 =
			    (const struct sockaddr_in6 *)from;
			a.family = 6;
			a.port = ntohs(sin6->sin6_port);
			memcpy(a.addr, &sin6->sin6_addr, 16);
			/* An IPv4 client on a dual-stack socket. */
			if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
				a.family = 4;
				memcpy(a.addr, a.addr + 12, 4);
			}
		}
		/* No SOFTWARE: the answer stays small (40 bytes for IPv4), so a
		 * spoofed request gains an attacker little. */
		on = stun_binding_response(out, sizeof out, &m, &a, NULL);
	}
	if (on &&
	    sendto(fd, out, on, 0, (const struct sockaddr *)from, flen) == (ssize_t)on)
		s->st.stun_responses++;
}

void rly_stun_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct rly_server *s = arg;
	uint8_t buf[STUN_MAX_MSG + 1];
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n =
		    recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if ((size_t)n > STUN_MAX_MSG) {
			s->st.stun_bad++;
			continue;
		}
		answer(s, fd, buf, (size_t)n, &from, flen);
	}
}

int rly_server_stun_listen(struct rly_server *s, const struct sockaddr *sa, socklen_t len,
                           char *err, size_t errlen)
{
	int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, sa, len) < 0) {
		int e = errno;
		snprintf(err, errlen, "--stun: %s%s", strerror(e),
		         e == EADDRINUSE ? " (is another STUN server on that port?)"
		                         : "");
		if (fd >= 0)
			close(fd);
		return -e;
	}
	s->stun_fd = fd;
	s->stun_ev =
	    event_new(s->cfg.base, fd, EV_READ | EV_PERSIST, rly_stun_read_cb, s);
	if (!s->stun_ev || event_add(s->stun_ev, NULL) < 0) {
		snprintf(err, errlen, "--stun: out of memory");
		return -ENOMEM;
	}
	return 0;
}
