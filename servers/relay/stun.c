/* mesh-relay's STUN server: answers Binding requests on a UDP socket with
 * the address they came from (XOR-MAPPED-ADDRESS; MAPPED-ADDRESS for a
 * classic RFC 3489 request). Requests that ask for a changed address or
 * port (RFC 3489 / 5780 CHANGE-REQUEST) are not answered: this server has
 * one address. Anything that is not a well-formed request is dropped and
 * counted. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/stun/stun.h"
#include "core/util/log.h"
#include "servers/relay/relay_int.h"

static void answer(struct rly_server *s, int fd, const uint8_t *p, size_t n,
                   const struct sockaddr_storage *from, socklen_t flen)
{
	struct stun_msg m;
	if (stun_parse(p, n, &m) < 0 || m.type != STUN_BINDING_REQUEST ||
	    (m.has_fingerprint && !m.fingerprint_ok) || m.change_flags) {
		s->st.stun_bad++;
		return;
	}
	s->st.stun_requests++;
	uint8_t out[256];
	size_t on;
	if (m.unknown_required) {
		on = stun_error_response(out, sizeof out, &m, 420, "Unknown Attribute");
	} else {
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
