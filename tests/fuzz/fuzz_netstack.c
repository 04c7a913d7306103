/* Fuzzes netstack/ (lwIP and our glue) with packets from the mesh side and
 * actions on the local side. Each input starts a fresh stack (ns_init) with
 * a listener on ports 80 and 81 and UDP ports 53 and an ephemeral one (both
 * echo what they receive), and ends with ns_shutdown(), which must free
 * everything. Accepted and dialed connections are spliced to socketpairs
 * whose far ends the program drives, with splice options in turn (a shared
 * ns_acct, idle_ms 1 s, buf_limit 16 KiB or 64 KiB); the ns_acct is
 * released before or after ns_shutdown (bit 0 of the first byte). Checks:
 * every packet the stack emits is well-formed IPv4/IPv6 from one of our
 * addresses with correct lengths and checksums (TCP, unfragmented UDP);
 * queued receive data stays within the window of each connection; the
 * ns_acct counters match the global ones.
 *
 * The input is a program, one op byte then its operands, until it runs out:
 *   0 raw:   2-byte length (capped at 1600), then that many bytes fed as is
 *   1 tcp:   a TCP segment to us: sel (bit 0 IPv6, bit 1-2 peer port, bit 3
 *            seq tracked, bit 4 ack tracked, bit 5 answers the last dial),
 *            flags, [seq 4], [ack 4], window 2, option length (%44, then
 *            that many bytes), payload length * 8, payload (padded)
 *   2 icmp:  sel (bit 0 IPv6), type, code, length, bytes
 *   3 local: connection, action (write n / read / shutdown / close / RST)
 *   4 time:  lwIP's clock jumps byte * 50 ms, timers run
 *   5 dial:  sel (bit 0 IPv6, bit 1 port 80/81)
 *   6 ping:  sel (bit 0 IPv6)
 *   7 loop:  the event loop runs once (socket events)
 *   8 udp:   a datagram to us: sel (bit 0 IPv6, bits 1-2 port 53 /
 *            ephemeral / 54 (unbound) / 53, bit 3 drop one fragment), length
 *            byte * 64 (in fragments of 1232 above 1400), bytes (padded)
 *   9 usend: sel (bit 0 IPv6, bit 1 from the ephemeral port), length 2
 *            bytes (up to 65535: too large fails), sent to the peer
 *  10 ctl:   byte % 8: unlisten 80 / listen 80 / close and reopen port 53 /
 *            idle sweep / any-port handler on (on_accept; port 80 only
 *            while toggled) / off / toggle port 80 / toggle a local UDP
 *            service at the peer's port 5000 (answers, from the loop, once)
 * Op bytes are taken % 11; the time op also runs the idle sweep.
 * FUZZ_NETSTACK_TRACE=1 in the environment prints the counters per input. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>

#include "lwipopts.h"
#include "netstack/ns.h"
#include "netstack/ns_priv.h"

#define MAXC 8
#define MAXF 8

static const uint8_t our4[4] = {100, 64, 0, 1}, peer4[4] = {100, 64, 0, 2};
static const uint8_t our6[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 1};
static const uint8_t peer6[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 2};

struct flow {
	bool used, v6;
	uint16_t pport, oport; /* peer port, our port */
	uint32_t snd_nxt, rcv_nxt;
};

static struct event_base *base;
static int far[MAXC];
static unsigned nfar;
static struct flow flows[MAXF];
static uint16_t dial_port, dial_rport; /* ports of the last dial, from its SYN */
static uint8_t scratch[70000];
static struct ns_acct *fz_acct;
static struct ns_udp *udp53, *udpeph;
static uint16_t frag_id;

/* ---- checksums ---- */

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint16_t pseudo_sum(bool v6, const uint8_t *src, const uint8_t *dst, uint8_t proto,
                           const uint8_t *l4, size_t len)
{
	uint32_t s = sum16(0, src, v6 ? 16 : 4);

	s = sum16(s, dst, v6 ? 16 : 4);
	s += proto + (uint32_t)len;
	return fold(sum16(s, l4, len));
}

/* ---- output checks ---- */

static struct flow *flow_find(bool v6, uint16_t pport, uint16_t oport)
{
	for (int i = 0; i < MAXF; i++)
		if (flows[i].used && flows[i].v6 == v6 && flows[i].pport == pport &&
		    flows[i].oport == oport)
			return &flows[i];
	return NULL;
}

static struct flow *flow_get(bool v6, uint16_t pport, uint16_t oport)
{
	struct flow *f = flow_find(v6, pport, oport);

	if (f != NULL)
		return f;
	for (int i = 0; i < MAXF && f == NULL; i++)
		if (!flows[i].used)
			f = &flows[i];
	if (f == NULL)
		f = &flows[(pport + oport) % MAXF];
	memset(f, 0, sizeof(*f));
	f->used = true;
	f->v6 = v6;
	f->pport = pport;
	f->oport = oport;
	f->snd_nxt = 1000;
	return f;
}

/* Follows our side of each flow, so that the program can ACK exactly. */
static void check_tcp_out(bool v6, const uint8_t *t, size_t len)
{
	uint16_t sport, dport;
	uint32_t seq, end;
	struct flow *f;
	size_t off;

	if (len < 20)
		abort();
	off = (size_t)(t[12] >> 4) * 4;
	if (off < 20 || off > len)
		abort();
	sport = (uint16_t)(t[0] << 8 | t[1]);
	dport = (uint16_t)(t[2] << 8 | t[3]);
	seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
	if (t[13] & 0x04)
		return;               /* RST */
	if ((t[13] & 0x12) == 0x02) { /* our SYN: a dial */
		dial_port = sport;
		dial_rport = dport;
		f = flow_get(v6, dport, sport);
		f->rcv_nxt = seq + 1;
		return;
	}
	f = flow_find(v6, dport, sport);
	if (f == NULL)
		return;
	end = seq + (uint32_t)(len - off) + ((t[13] & 0x03) ? 1 : 0);
	if (t[13] & 0x02)
		f->rcv_nxt = end;
	else if ((int32_t)(end - f->rcv_nxt) > 0 && (int32_t)(seq - f->rcv_nxt) <= 0)
		f->rcv_nxt = end;
}

static void on_output(void *ctx, const uint8_t *p, size_t len)
{
	(void)ctx;
	if (len < 20 || len > 0xffff)
		abort();
	if (p[0] >> 4 == 4) {
		size_t h = (size_t)(p[0] & 15) * 4;

		if (h < 20 || h > len || (size_t)(p[2] << 8 | p[3]) != len)
			abort();
		if (fold(sum16(0, p, h)) != 0 || memcmp(p + 12, our4, 4) != 0)
			abort();
		if (p[9] == 6 && (p[6] & 0x3f) == 0 && p[7] == 0) { /* unfragmented TCP */
			if (pseudo_sum(false, p + 12, p + 16, 6, p + h, len - h) != 0)
				abort();
			check_tcp_out(false, p + h, len - h);
		}
		if (p[9] == 17 && (p[6] & 0x3f) == 0 && p[7] == 0) { /* whole UDP */
			if (len - h < 8 ||
			    (size_t)(p[h + 4] << 8 | p[h + 5]) != len - h ||
			    pseudo_sum(false, p + 12, p + 16, 17, p + h, len - h) != 0)
				abort();
		}
	} else if (p[0] >> 4 == 6) {
		if (len < 40 || (size_t)(p[4] << 8 | p[5]) + 40 != len)
			abort();
		if (memcmp(p + 8, our6, 16) != 0)
			abort();
		if (p[6] == 6) {
			if (pseudo_sum(true, p + 8, p + 24, 6, p + 40, len - 40) != 0)
				abort();
			check_tcp_out(true, p + 40, len - 40);
		}
		if (p[6] == 17) {
			if (len < 48 || (size_t)(p[44] << 8 | p[45]) != len - 40 ||
			    pseudo_sum(true, p + 8, p + 24, 17, p + 40, len - 40) != 0)
				abort();
		}
	} else {
		abort();
	}
}

/* ---- local side ---- */

static void splice_new(struct ns_tcp *c)
{
	static const size_t limits[4] = {0, 16384, 65536, 1000};
	struct ns_splice_opts o = {0};
	int sv[2];

	if (nfar >= MAXC || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		ns_tcp_abort(c);
		return;
	}
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	/* A small buffer, so that the socket fills up and flow control runs. */
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &(int){4096}, sizeof(int));
	far[nfar++] = sv[1];
	if (nfar % 3 == 0) {
		ns_splice_start(c, sv[0], (const uint8_t *)"hi", nfar & 1 ? 2 : 0);
		return;
	}
	o.acct = fz_acct;
	o.idle_ms = nfar & 1 ? 1000 : 0;
	o.buf_limit = limits[nfar % 4];
	ns_splice_start_ex(c, sv[0], (const uint8_t *)"hi", nfar & 1 ? 2 : 0, &o);
}

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	(void)ctx;
	(void)dst;
	/* Echo, as a UDP service would (may fragment on the way out). */
	ns_udp_send(u, src, sport, data, len);
}

static void on_accept(void *ctx, struct ns_tcp *c, const struct ns_addr *src,
                      uint16_t sport, uint16_t dport)
{
	(void)ctx;
	(void)src;
	(void)sport;
	if (dport == 81)
		ns_tcp_abort(c);
	else
		splice_new(c);
}

static void on_dial(void *ctx, struct ns_tcp *c, int err)
{
	(void)ctx;
	if (c != NULL && err == 0)
		splice_new(c);
}

static void on_ping(void *ctx, int err, double rtt)
{
	(void)ctx;
	(void)err;
	(void)rtt;
}

/* ---- building packets ---- */

static void send_ip(bool v6, uint8_t proto, const uint8_t *l4, size_t len)
{
	static uint8_t b[70000];
	size_t h = v6 ? 40 : 20;

	memset(b, 0, h);
	if (!v6) {
		b[0] = 0x45;
		b[2] = (uint8_t)((h + len) >> 8);
		b[3] = (uint8_t)(h + len);
		b[8] = 64;
		b[9] = proto;
		memcpy(b + 12, peer4, 4);
		memcpy(b + 16, our4, 4);
		uint16_t c = fold(sum16(0, b, 20));
		b[10] = (uint8_t)(c >> 8);
		b[11] = (uint8_t)c;
	} else {
		b[0] = 0x60;
		b[4] = (uint8_t)(len >> 8);
		b[5] = (uint8_t)len;
		b[6] = proto;
		b[7] = 64;
		memcpy(b + 8, peer6, 16);
		memcpy(b + 24, our6, 16);
	}
	memcpy(b + h, l4, len);
	ns_input(b, h + len);
}

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t get8(struct in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t get32(struct in *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 8 | get8(in);
	return v;
}

static size_t getn(struct in *in, uint8_t *out, size_t n)
{
	if (n > in->n)
		n = in->n;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

static void op_tcp(struct in *in)
{
	uint8_t sel = get8(in), flags = get8(in), *t = scratch;
	bool v6 = sel & 1;
	bool to_dial = (sel & 0x20) && dial_port != 0;
	uint16_t pport = to_dial ? dial_rport : (uint16_t)(50000 + ((sel >> 1) & 3));
	uint16_t oport = to_dial ? dial_port : 80;
	struct flow *f = flow_get(v6, pport, oport);
	size_t optlen, paylen, h;
	uint32_t seq, ack;
	uint16_t c;

	seq = sel & 0x08 ? f->snd_nxt : get32(in);
	ack = sel & 0x10 ? f->rcv_nxt : get32(in);
	memset(t, 0, 20);
	t[0] = (uint8_t)(pport >> 8);
	t[1] = (uint8_t)pport;
	t[2] = (uint8_t)(oport >> 8);
	t[3] = (uint8_t)oport;
	for (int i = 0; i < 4; i++) {
		t[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
		t[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
	}
	t[13] = flags;
	t[14] = get8(in);
	t[15] = get8(in);
	optlen = (get8(in) % 44) & ~(size_t)3;
	memset(t + 20, 1, optlen);
	getn(in, t + 20, optlen);
	h = 20 + optlen;
	t[12] = (uint8_t)(h / 4) << 4;
	paylen = (size_t)get8(in) * 8;
	memset(t + h, 'x', paylen);
	getn(in, t + h, paylen);
	c = pseudo_sum(v6, v6 ? peer6 : peer4, v6 ? our6 : our4, 6, t, h + paylen);
	t[16] = (uint8_t)(c >> 8);
	t[17] = (uint8_t)c;
	if (seq == f->snd_nxt)
		f->snd_nxt += (uint32_t)paylen + ((flags & 0x02) ? 1 : 0) +
		              ((flags & 0x01) ? 1 : 0);
	send_ip(v6, 6, t, h + paylen);
}

static void op_icmp(struct in *in)
{
	uint8_t sel = get8(in), *m = scratch;
	bool v6 = sel & 1;
	size_t len = 8 + get8(in);
	uint16_t c;

	memset(m, 0, len);
	m[0] = get8(in);
	m[1] = get8(in);
	getn(in, m + 4, len - 4);
	c = v6 ? pseudo_sum(true, peer6, our6, 58, m, len) : fold(sum16(0, m, len));
	m[2] = (uint8_t)(c >> 8);
	m[3] = (uint8_t)c;
	send_ip(v6, v6 ? 58 : 1, m, len);
}

/* A datagram from the peer, in IPv4/IPv6 fragments when above 1400. */
static void op_udp(struct in *in)
{
	static const uint8_t hole_seed = 3;
	uint8_t sel = get8(in), *u = scratch, b[1500];
	bool v6 = sel & 1;
	uint16_t dport = ns_udp_port(udpeph), c;
	size_t len = (size_t)get8(in) * 64, total, off, fs = 1232;
	int skip = -1, idx = 0;

	switch ((sel >> 1) & 3) {
	case 0:
	case 3:
		dport = 53;
		break;
	case 2:
		dport = 54;
		break;
	}
	total = len + 8;
	u[0] = 0x13, u[1] = 0x88; /* source port 5000 */
	u[2] = (uint8_t)(dport >> 8), u[3] = (uint8_t)dport;
	u[4] = (uint8_t)(total >> 8), u[5] = (uint8_t)total;
	u[6] = u[7] = 0;
	memset(u + 8, 'u', len);
	getn(in, u + 8, len);
	c = pseudo_sum(v6, v6 ? peer6 : peer4, v6 ? our6 : our4, 17, u, total);
	u[6] = (uint8_t)(c >> 8), u[7] = (uint8_t)(c ? c : 0xffff);
	if (total <= 1400) {
		send_ip(v6, 17, u, total);
		return;
	}
	if (sel & 8)
		skip = (int)((len / 64 + hole_seed) % ((total + fs - 1) / fs));
	frag_id++;
	for (off = 0; off < total; off += fs, idx++) {
		size_t n = total - off < fs ? total - off : fs, h = v6 ? 48 : 20;
		bool more = off + n < total;

		if (idx == skip)
			continue;
		memset(b, 0, h);
		if (!v6) {
			uint16_t fo = (uint16_t)(off / 8) | (more ? 0x2000 : 0), k;

			b[0] = 0x45;
			b[2] = (uint8_t)((h + n) >> 8), b[3] = (uint8_t)(h + n);
			b[4] = (uint8_t)(frag_id >> 8), b[5] = (uint8_t)frag_id;
			b[6] = (uint8_t)(fo >> 8), b[7] = (uint8_t)fo;
			b[8] = 64;
			b[9] = 17;
			memcpy(b + 12, peer4, 4);
			memcpy(b + 16, our4, 4);
			k = fold(sum16(0, b, 20));
			b[10] = (uint8_t)(k >> 8), b[11] = (uint8_t)k;
		} else {
			uint16_t fo = (uint16_t)off | (more ? 1 : 0);

			b[0] = 0x60;
			b[4] = (uint8_t)((n + 8) >> 8), b[5] = (uint8_t)(n + 8);
			b[6] = 44;
			b[7] = 64;
			memcpy(b + 8, peer6, 16);
			memcpy(b + 24, our6, 16);
			b[40] = 17;
			b[42] = (uint8_t)(fo >> 8), b[43] = (uint8_t)fo;
			b[46] = (uint8_t)(frag_id >> 8), b[47] = (uint8_t)frag_id;
		}
		memcpy(b + h, u + off, n);
		ns_input(b, h + n);
	}
}

static void op_usend(struct in *in)
{
	uint8_t sel = get8(in);
	size_t len = (size_t)get8(in) << 8;
	struct ns_addr dst = {.family = sel & 1 ? AF_INET6 : AF_INET};
	int r;

	len |= get8(in);
	memcpy(dst.addr, sel & 1 ? peer6 : peer4, sel & 1 ? 16 : 4);
	memset(scratch, 'o', len);
	r = ns_udp_send(sel & 2 ? udpeph : udp53, &dst, 5000, scratch, len);
	if (r != 0 && r != -EMSGSIZE && r != -ENETDOWN && r != -ENOMEM)
		abort();
	if (r == -EMSGSIZE && len <= (sel & 1 ? 65487u : 65507u))
		abort();
}

/* The any-port handler (ns_tcp_listen_any) takes port 80 when its
 * listener is gone, while fz_any_port80 says so. */
static bool fz_any_port80;
static bool fz_any_filter(void *ctx, uint16_t dport)
{
	(void)ctx;
	return dport != 80 || fz_any_port80;
}

/* A local UDP service at the peer's port 5000 (where op_usend sends):
 * answers each datagram once, from the loop. */
static void fz_local_udp(void *ctx, const struct ns_addr *src, uint16_t sport,
                         const uint8_t *data, size_t len)
{
	struct ns_addr svc = {.family = src->family};
	int r;

	(void)ctx;
	/* The UDP ports echo: answer only what is not already an answer, or
	 * the two would ping-pong forever. */
	if (len == 0 || data[0] == 'R')
		return;
	memcpy(scratch, data, len > 512 ? 512 : len);
	scratch[0] = 'R';
	data = scratch;
	memcpy(svc.addr, src->family == AF_INET6 ? peer6 : peer4,
	       src->family == AF_INET6 ? 16 : 4);
	r = ns_local_udp_reply(&svc, 5000, src, sport, data, len > 512 ? 512 : len);
	if (r != 0 && r != -ENOBUFS && r != -ENOMEM)
		abort();
}

static bool fz_local_on;
static void fz_local_udp_set(bool on)
{
	struct ns_addr a4 = {.family = AF_INET}, a6 = {.family = AF_INET6};

	memcpy(a4.addr, peer4, 4);
	memcpy(a6.addr, peer6, 16);
	if (ns_local_udp_set(&a4, 5000, on ? fz_local_udp : NULL, NULL) != 0 ||
	    ns_local_udp_set(&a6, 5000, on ? fz_local_udp : NULL, NULL) != 0)
		abort();
}

static void op_ctl(struct in *in)
{
	switch (get8(in) % 8) {
	case 0:
		ns_tcp_unlisten(80);
		break;
	case 1:
		ns_tcp_listen(80, on_accept, NULL);
		break;
	case 2:
		ns_udp_close(udp53);
		udp53 = ns_udp_open(53, on_udp, NULL, NULL);
		if (udp53 == NULL)
			abort();
		break;
	case 3:
		ns_splice_idle_sweep();
		break;
	case 4:
		if (ns_tcp_listen_any(fz_any_filter, on_accept, NULL) != 0)
			abort();
		break;
	case 5:
		ns_tcp_listen_any(NULL, NULL, NULL);
		break;
	case 6:
		fz_any_port80 = !fz_any_port80;
		break;
	case 7:
		fz_local_on = !fz_local_on;
		fz_local_udp_set(fz_local_on);
		break;
	}
}

static void op_local(struct in *in)
{
	uint8_t which = get8(in), act = get8(in);
	int fd;

	if (nfar == 0)
		return;
	fd = far[which % nfar];
	if (fd < 0)
		return;
	switch (act % 5) {
	case 0: {
		size_t n = (size_t)(act / 5 + 1) * 1024;

		memset(scratch, 'L', n);
		if (write(fd, scratch, n) < 0 && errno != EAGAIN && errno != EPIPE &&
		    errno != ECONNRESET)
			abort();
		break;
	}
	case 1:
		while (read(fd, scratch, 65536) > 0)
			;
		break;
	case 2:
		shutdown(fd, SHUT_WR);
		break;
	case 3:
	case 4:
		close(fd);
		far[which % nfar] = -1;
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ns_config cfg = {.n_addrs = 2, .mtu = 1420};
	struct in in = {data, size};
	struct ns_addr dst;

	if (base == NULL) {
		base = event_base_new();
		signal(SIGPIPE, SIG_IGN);
	}
	cfg.addrs[0].family = AF_INET;
	memcpy(cfg.addrs[0].addr, our4, 4);
	cfg.addrs[1].family = AF_INET6;
	memcpy(cfg.addrs[1].addr, our6, 16);
	if (ns_init(base, &cfg, on_output, NULL) != 0)
		abort();
	ns_tcp_listen(80, on_accept, NULL);
	ns_tcp_listen(81, on_accept, NULL);
	fz_acct = ns_acct_new();
	udp53 = ns_udp_open(53, on_udp, NULL, NULL);
	udpeph = ns_udp_open(0, on_udp, NULL, NULL);
	if (fz_acct == NULL || udp53 == NULL || udpeph == NULL)
		abort();
	memset(flows, 0, sizeof(flows));
	dial_port = dial_rport = 0;
	nfar = 0;

	while (in.n > 0) {
		uint8_t op = get8(&in);

		switch (op % 11) {
		case 0: {
			size_t n = (size_t)get8(&in) << 8;

			n |= get8(&in);
			n = getn(&in, scratch, n > 1600 ? 1600 : n);
			ns_input(scratch, n);
			break;
		}
		case 1:
			op_tcp(&in);
			break;
		case 2:
			op_icmp(&in);
			break;
		case 3:
			op_local(&in);
			break;
		case 4:
			ns_clock_offset_ms += (uint32_t)get8(&in) * 50;
			ns_check_timeouts();
			ns_splice_idle_sweep();
			break;
		case 5: {
			uint8_t sel = get8(&in);

			dst.family = sel & 1 ? AF_INET6 : AF_INET;
			memcpy(dst.addr, sel & 1 ? peer6 : peer4, sel & 1 ? 16 : 4);
			ns_tcp_dial(&dst, (uint16_t)(80 + ((sel >> 1) & 1)), on_dial,
			            NULL);
			break;
		}
		case 6: {
			uint8_t sel = get8(&in);

			dst.family = sel & 1 ? AF_INET6 : AF_INET;
			memcpy(dst.addr, sel & 1 ? peer6 : peer4, sel & 1 ? 16 : 4);
			ns_ping(&dst, 1000, on_ping, NULL);
			break;
		}
		case 7:
			event_base_loop(base, EVLOOP_NONBLOCK);
			break;
		case 8:
			op_udp(&in);
			break;
		case 9:
			op_usend(&in);
			break;
		case 10:
			op_ctl(&in);
			break;
		}
		/* Each connection queues at most its window. */
		if (ns_debug_rxq_bytes() > (size_t)TCP_WND * MAXC)
			abort();
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	{
		struct ns_stats st;

		ns_get_stats(&st);
		if (fz_acct->bytes_in > st.splice_bytes_in ||
		    fz_acct->bytes_out > st.splice_bytes_out ||
		    fz_acct->active > st.tcp_active ||
		    fz_acct->idle_closed > st.idle_reset)
			abort();
	}
	if (getenv("FUZZ_NETSTACK_TRACE") != NULL) {
		struct ns_stats st;

		ns_get_stats(&st);
		fprintf(
		    stderr,
		    "netstack: %llu conns (%llu open), %llu refused, %llu reset, "
		    "%llu bytes in, %llu out, %llu dropped; udp %llu rx, %llu tx, "
		    "%llu no port; %llu idle resets\n",
		    (unsigned long long)st.tcp_total, (unsigned long long)st.tcp_active,
		    (unsigned long long)st.tcp_refused, (unsigned long long)st.tcp_reset,
		    (unsigned long long)st.splice_bytes_in,
		    (unsigned long long)st.splice_bytes_out,
		    (unsigned long long)st.input_drop, (unsigned long long)st.udp_rx,
		    (unsigned long long)st.udp_tx, (unsigned long long)st.udp_drop,
		    (unsigned long long)st.idle_reset);
	}
	if (size > 0 && (data[0] & 1)) {
		ns_acct_release(fz_acct); /* the splices still hold it */
		ns_shutdown();
	} else {
		ns_shutdown();
		if (fz_acct->active != 0 || fz_acct->refs != 1)
			abort();
		ns_acct_release(fz_acct);
	}
	fz_local_udp_set(false); /* services outlive ns_shutdown */
	fz_local_on = fz_any_port80 = false;
	ns_udp_close(udp53); /* after ns_shutdown: only frees */
	ns_udp_close(udpeph);
	fz_acct = NULL;
	udp53 = udpeph = NULL;
	for (unsigned i = 0; i < nfar; i++)
		if (far[i] >= 0)
			close(far[i]);
	return 0;
}
