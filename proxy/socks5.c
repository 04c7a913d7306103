/* [Socks5]: a SOCKS5 server (RFC 1928) with optional username/password
 * (RFC 1929; wrong credentials get status 0x01, then the connection
 * closes). CONNECT to IPv4, IPv6 and names; UDP ASSOCIATE (socks5_udp.c
 * takes the connection over); BIND gets 0x07. The request may arrive byte
 * by byte or all at once with data behind it (which goes to the
 * destination first). Reply codes:
 *   not allowed (Direct's policy) 0x02,
 *   no route (no mesh peer and Direct = no) 0x03, name not resolved / host
 *   unreachable 0x04, refused 0x05, timed out 0x06, unknown command 0x07,
 *   unknown address type 0x08, anything else 0x01.
 * CONNECT's BND.ADDR is 0.0.0.0:0: the netstack does not tell us the
 * local side.
 *
 * The same port speaks SOCKS4 and SOCKS4a when the first byte is 4:
 * CONNECT only (BIND gets 91), 90 on success and 91 for every failure.
 * The user id is ignored. SOCKS4 carries no password, so when Username and
 * Password are configured every SOCKS4 request is refused with 91. */
#include "proxy/internal.h"

#include "config/config.h"
#include "core/util/log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SOCKS_GREETING, SOCKS_AUTH, SOCKS_REQUEST, SOCKS4_REQUEST };

struct px_socks {
	struct px_front front; /* first: sessions point at it */
	char *user, *pass;     /* NULL: no authentication */
	struct px_udp_assocs udp;
};

/* Room for the largest greeting, auth and request arriving at once (257 +
 * 513 + 262 = 1032 bytes; SOCKS4a: SOCKS4_REQUEST_MAX = 520) plus early
 * data; more early data waits in the socket until the splice. Each
 * session in its handshake holds one (4096 made 1,000 parallel handshakes
 * leave 4 MiB of heap behind, pinned by what outlives them). */
#define SOCKS_BUF 1536
_Static_assert(SOCKS_BUF >= 257 + 513 + 262 + 256,
               "SOCKS_BUF below the largest handshake");

static struct px_socks *px_socks_of(struct px_sess *s)
{
	return (struct px_socks *)s->front;
}

static bool px_socks_cred_ok(const struct px_socks *ps, const struct px_socks5_auth *a)
{
	size_t ul = strlen(ps->user), pl = strlen(ps->pass);
	/* Lengths are not secret; the bytes are compared in constant time. */
	bool ok = a->ulen == ul && a->plen == pl;
	ok &= sodium_memcmp(a->user, ps->user, ok ? ul : 0) == 0;
	ok &= sodium_memcmp(a->pass, ps->pass, ok ? pl : 0) == 0;
	return ok;
}

static void px_socks_reply(struct px_sess *s, uint8_t rep)
{
	uint8_t r[SOCKS5_REPLY_MAX];
	px_sess_send(s, r, px_socks5_reply(r, rep, NULL));
}

static void px_socks4_send(struct px_sess *s, uint8_t rep)
{
	uint8_t r[SOCKS4_REPLY_LEN];
	px_sess_send(s, r, px_socks4_reply(r, rep));
}

/* A SOCKS4/4a request (the session's first byte was 4). */
static enum px_parse px_socks4_on_data(struct px_sess *s)
{
	struct px_socks *ps = px_socks_of(s);
	uint8_t cmd = 0;
	size_t used = 0;
	if (ps->user) {
		/* SOCKS4 has no password: refuse at once. */
		px_socks4_send(s, SOCKS4_REP_REJECTED);
		PX_STAT(s, err_auth);
		return PX_PARSE_ERROR;
	}
	enum px_parse r = px_socks4_parse_request(
	    s->buf + s->consumed, s->len - s->consumed, &cmd, &s->target, &used);
	if (r == PX_PARSE_MORE)
		return r;
	if (r == PX_PARSE_OK && cmd != SOCKS4_CMD_CONNECT)
		r = PX_PARSE_ERROR; /* BIND */
	if (r == PX_PARSE_ERROR) {
		px_socks4_send(s, SOCKS4_REP_REJECTED);
		PX_STAT(s, err_protocol);
		return r;
	}
	s->consumed += used;
	char t[300];
	px_target_format(&s->target, t, sizeof(t));
	log_debug("socks4: CONNECT %s", t);
	return PX_PARSE_OK;
}

static enum px_parse px_socks_on_data(struct px_sess *s)
{
	struct px_socks *ps = px_socks_of(s);
	if (s->stage == SOCKS_GREETING && s->len > s->consumed &&
	    s->buf[s->consumed] == SOCKS4_VER)
		s->stage = SOCKS4_REQUEST;
	if (s->stage == SOCKS4_REQUEST)
		return px_socks4_on_data(s);
	for (;;) {
		const uint8_t *p = s->buf + s->consumed;
		size_t n = s->len - s->consumed, used = 0;
		enum px_parse r;
		if (s->stage == SOCKS_GREETING) {
			struct px_socks5_greeting g;
			r = px_socks5_parse_greeting(p, n, &g, &used);
			if (r == PX_PARSE_ERROR)
				PX_STAT(s, err_protocol); /* not SOCKS5: just close */
			if (r != PX_PARSE_OK)
				return r;
			s->consumed += used;
			uint8_t method = ps->user
			                     ? (g.userpass ? SOCKS5_METHOD_USERPASS
			                                   : SOCKS5_METHOD_UNACCEPTABLE)
			                     : (g.no_auth ? SOCKS5_METHOD_NONE
			                                  : SOCKS5_METHOD_UNACCEPTABLE);
			uint8_t rep[2] = {SOCKS5_VER, method};
			px_sess_send(s, rep, 2);
			if (method == SOCKS5_METHOD_UNACCEPTABLE) {
				PX_STAT(s, err_auth);
				return PX_PARSE_ERROR;
			}
			s->stage =
			    method == SOCKS5_METHOD_USERPASS ? SOCKS_AUTH : SOCKS_REQUEST;
		} else if (s->stage == SOCKS_AUTH) {
			struct px_socks5_auth a;
			r = px_socks5_parse_auth(p, n, &a, &used);
			if (r == PX_PARSE_OK) {
				bool ok = px_socks_cred_ok(ps, &a);
				sodium_memzero(&a, sizeof(a));
				uint8_t rep[2] = {SOCKS5_AUTH_VER, ok ? 0x00 : 0x01};
				px_sess_send(s, rep, 2);
				if (!ok) {
					PX_STAT(s, err_auth);
					return PX_PARSE_ERROR;
				}
				s->consumed += used;
				s->stage = SOCKS_REQUEST;
				continue;
			}
			if (r == PX_PARSE_ERROR) {
				uint8_t rep[2] = {SOCKS5_AUTH_VER, 0x01};
				px_sess_send(s, rep, 2);
				PX_STAT(s, err_protocol);
			}
			return r;
		} else {
			uint8_t cmd = 0, code = 0;
			r = px_socks5_parse_request(p, n, &cmd, &s->target, &used, &code);
			if (r == PX_PARSE_MORE)
				return r;
			if (r == PX_PARSE_OK && cmd == SOCKS5_CMD_BIND) {
				r = PX_PARSE_ERROR;
				code = SOCKS5_REP_CMD_UNSUPPORTED;
			}
			if (r == PX_PARSE_ERROR) {
				px_socks_reply(s, code);
				PX_STAT(s, err_protocol);
				return r;
			}
			s->consumed += used;
			char t[300];
			px_target_format(&s->target, t, sizeof(t));
			if (cmd == SOCKS5_CMD_UDP_ASSOCIATE) {
				log_debug("socks5: UDP ASSOCIATE from %s", t);
				return PX_PARSE_DETACH;
			}
			log_debug("socks5: CONNECT %s", t);
			return PX_PARSE_OK;
		}
	}
}

static void px_socks_on_result(struct px_sess *s, enum px_err e)
{
	uint8_t rep;
	if (s->stage == SOCKS4_REQUEST) {
		px_socks4_send(s, e == PX_OK ? SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED);
		return;
	}
	switch (e) {
	case PX_OK:
		rep = SOCKS5_REP_SUCCEEDED;
		break;
	case PX_E_NO_ROUTE:
		rep = SOCKS5_REP_NET_UNREACH;
		break;
	case PX_E_RESOLVE:
	case PX_E_UNREACHABLE:
		rep = SOCKS5_REP_HOST_UNREACH;
		break;
	case PX_E_REFUSED:
		rep = SOCKS5_REP_REFUSED;
		break;
	case PX_E_TIMEOUT:
		rep = SOCKS5_REP_TTL_EXPIRED;
		break;
	case PX_E_DENIED:
	case PX_E_POLICY:
		rep = SOCKS5_REP_NOT_ALLOWED;
		break;
	default:
		rep = SOCKS5_REP_GENERAL;
		break;
	}
	px_socks_reply(s, rep);
}

/* UDP ASSOCIATE: the association takes the control connection. */
static void px_socks_on_detach(struct px_sess *s, int fd)
{
	struct px_socks *ps = px_socks_of(s);
	px_udp_assoc_start(&ps->front, &ps->udp, fd, &s->target, s->out + s->out_off,
	                   s->out_len - s->out_off);
}

static const struct px_sess_ops px_socks_ops = {
    .on_data = px_socks_on_data,
    .on_result = px_socks_on_result,
    .buf_size = SOCKS_BUF,
    .on_detach = px_socks_on_detach,
};

static void px_socks_on_accept(void *ctx, int fd)
{
	struct px_socks *ps = ctx;
	px_sess_new(&ps->front, fd, &px_socks_ops);
}

static void px_free_secret(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

struct px_socks *px_socks_new(const struct px_env *env, const struct cfg_socks5 *cfg,
                              char *err, size_t errlen)
{
	struct px_socks *ps = calloc(1, sizeof(*ps));
	if (!ps) {
		snprintf(err, errlen, "socks5: out of memory");
		return NULL;
	}
	if (px_front_init(&ps->front, env, "socks5", &cfg->limits, cfg->direct) < 0) {
		snprintf(err, errlen, "socks5: out of memory");
		px_socks_free(ps);
		return NULL;
	}
	if (cfg->username && cfg->password) {
		ps->user = strdup(cfg->username);
		ps->pass = strdup(cfg->password);
		if (!ps->user || !ps->pass) {
			snprintf(err, errlen, "socks5: out of memory");
			px_socks_free(ps);
			return NULL;
		}
	}
	ps->front.lst = px_listener_new(env->base, &cfg->bind, px_socks_on_accept, ps,
	                                &ps->front.stats.err_accept, err, errlen);
	if (!ps->front.lst) {
		px_socks_free(ps);
		return NULL;
	}
	return ps;
}

void px_socks_free(struct px_socks *ps)
{
	if (!ps)
		return;
	px_udp_assoc_close_all(&ps->udp);
	px_front_fini(&ps->front);
	px_free_secret(ps->user);
	px_free_secret(ps->pass);
	free(ps);
}

void px_socks_get_stats(const struct px_socks *ps, struct px_stats *st)
{
	px_front_stats(&ps->front, st);
}

void px_socks_local_addr(const struct px_socks *ps, struct sockaddr_storage *ss,
                         socklen_t *len)
{
	px_listener_addr(ps->front.lst, ss, len);
}
