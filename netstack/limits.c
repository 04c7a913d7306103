/* What keeps one mesh peer from taking the node: the memory budget shared
 * by every connection (netstack queues, lwIP's send buffers, and what the
 * proxy charges for its own buffers), and the table of sources (remote
 * addresses) that gives each one a share of the half-open handshakes and a
 * cap on inbound connections.
 *
 * The budget is enforced where bytes enter, never by dropping what was
 * acknowledged: over it, a connection's receive window reopens only down to
 * NS_MEM_FLOOR and lwIP keeps the next segment ("refused", retried from its
 * fast timer), the local socket is read only while the connection queues
 * less than NS_MEM_FLOOR, and new inbound connections (mesh or proxy) are
 * refused from 7/8 of the budget on. So the total stays near
 * the budget plus a floor per connection, and a connection that holds
 * nothing still moves.
 *
 * Fairness: over the budget only the heavy are held back. Each source
 * (remote address with inbound connections or orphans) and the node's own
 * users (proxy clients, dialled connections, the proxy's buffers: "local")
 * get an equal share, limit / (sources + 1); a source or local below its
 * share is still admitted and its windows still open, so a flooder fills
 * its own share, not everyone's. What lwIP holds on its own (out-of-order
 * data, refused data, the send queues of orphans) is measured once a
 * second (ns_mem_sweep) and charged to the source that sent or withholds
 * it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

/* The settings outlive ns_init()/ns_shutdown() (ns_ctx is cleared). */
static struct ns_limits lim = {
    .mem_limit = 0, /* ns_mem_limit_default(), computed on first use */
    .max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT,
};

/* The proxy's charges (ns_mem_charge) outlive ns_init()/ns_shutdown() too:
 * a relay or UDP queue that lives across a netstack restart uncharges
 * later what it charged before. */
static size_t mem_ext;
static uint64_t mem_uncharge_excess; /* uncharges beyond the charges: a bug */
static uint64_t recounts;            /* half-open recounts (tests) */

/* ---- the memory budget ---- */

size_t ns_mem_limit_default(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	uint64_t quarter;

	if (pages <= 0 || psz <= 0)
		return NS_MEM_LIMIT_MAX_DEFAULT;
	quarter = (uint64_t)pages * (uint64_t)psz / 4;
	if (quarter > NS_MEM_LIMIT_MAX_DEFAULT)
		return NS_MEM_LIMIT_MAX_DEFAULT;
	return quarter < NS_MEM_LIMIT_MIN ? NS_MEM_LIMIT_MIN : (size_t)quarter;
}

static size_t ns_mem_limit(void)
{
	if (lim.mem_limit == 0)
		lim.mem_limit = ns_mem_limit_default();
	return lim.mem_limit;
}

void ns_set_limits(const struct ns_limits *l)
{
	if (l == NULL)
		return;
	lim.mem_limit = l->mem_limit;
	if (lim.mem_limit != 0 && lim.mem_limit < NS_MEM_LIMIT_MIN)
		lim.mem_limit = NS_MEM_LIMIT_MIN;
	lim.max_conns_per_src = l->max_conns_per_src;
}

void ns_get_limits(struct ns_limits *l)
{
	*l = lim;
	l->mem_limit = ns_mem_limit();
}

size_t ns_mem_used(void)
{
	return ns_ctx.mem_rx + ns_ctx.mem_tx + mem_ext + ns_ctx.mem_lwip;
}

/* What the node's own users hold: the proxy's buffers, the queues of
 * connections that are not inbound (dialled, proxy clients), and what lwIP
 * holds for those. */
static size_t ns_mem_local(void)
{
	return mem_ext + (ns_ctx.mem_rx + ns_ctx.mem_tx - ns_ctx.mem_in) +
	       ns_ctx.mem_lwip_local;
}

/* Each active source and local get an equal part of the budget. */
static size_t ns_mem_share(void)
{
	return ns_mem_limit() / ((size_t)ns_ctx.src_active + 1);
}

bool ns_mem_over(void)
{
	return ns_mem_used() >= ns_mem_limit();
}

/* New work is turned away before the budget is reached, so that the
 * connections already admitted keep room to move. */
static bool ns_mem_admit_ok(void)
{
	return ns_mem_used() < ns_mem_limit() - ns_mem_limit() / 8;
}

/* For lwIP's out-of-order limit (ns_hooks.h): 1 once new connections are
 * being refused. */
int ns_mem_pressure(void)
{
	return ns_mem_admit_ok() ? 0 : 1;
}

/* Local users are refused only when the budget is nearly full and they
 * hold their share: a peer's flood of inbound connections does not turn
 * away the node's SOCKS5 and HTTP clients. */
bool ns_mem_admit(void)
{
	size_t share = ns_mem_share();

	if (ns_mem_admit_ok() || ns_mem_local() < share - share / 8)
		return true;
	ns_ctx.st.front_refused_mem++;
	return false;
}

void ns_mem_charge(size_t bytes)
{
	mem_ext += bytes;
	ns_mem_note_peak();
}

void ns_mem_uncharge(size_t bytes)
{
	if (bytes > mem_ext) {
		mem_uncharge_excess++; /* a caller's bug: counted, never wraps */
		bytes = mem_ext;
	}
	mem_ext -= bytes;
}

void ns_mem_get_stats(struct ns_stats *st)
{
	st->mem_uncharge_excess = mem_uncharge_excess;
}

uint64_t ns_debug_recounts(void)
{
	return recounts;
}

void ns_mem_note_peak(void)
{
	size_t used = ns_mem_used();

	if (used > ns_ctx.st.mem_peak)
		ns_ctx.st.mem_peak = used;
}

/* ---- sources ---- */

/* One remote address with half-open handshakes or inbound connections;
 * freed when it has neither. Hashed with a per-process seed. */
struct ns_src {
	struct ns_src *next;
	ip_addr_t addr;
	u32_t half_open;
	u32_t conns;
	u32_t orphans;   /* orphans holding data (ns_mem_sweep) */
	size_t mem;      /* charged for its connections' queues */
	size_t lwip_mem; /* what lwIP holds for it (ns_mem_sweep) */
};

#define NS_SRC_BUCKETS 1024

static struct ns_src *src_tab[NS_SRC_BUCKETS];
static uint32_t src_seed;

static unsigned ns_src_hash(const ip_addr_t *a)
{
	const uint8_t *p;
	uint32_t h = 2166136261u ^ src_seed;
	size_t n, i;

	if (IP_IS_V6(a)) {
		p = (const uint8_t *)ip_2_ip6(a)->addr;
		n = 16;
	} else {
		p = (const uint8_t *)&ip_2_ip4(a)->addr;
		n = 4;
	}
	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	h ^= h >> 15;
	return h % NS_SRC_BUCKETS;
}

static bool ns_src_same(const ip_addr_t *a, const ip_addr_t *b)
{
	if (IP_IS_V6(a) != IP_IS_V6(b))
		return false;
	if (IP_IS_V6(a))
		return memcmp(ip_2_ip6(a)->addr, ip_2_ip6(b)->addr, 16) == 0;
	return ip4_addr_get_u32(ip_2_ip4(a)) == ip4_addr_get_u32(ip_2_ip4(b));
}

/* The entry of a, created when create is set (NULL: none, or no memory). */
static struct ns_src *ns_src_get(const ip_addr_t *a, bool create)
{
	struct ns_src *s, **head;

	if (src_seed == 0)
		src_seed = arc4random() | 1;
	head = &src_tab[ns_src_hash(a)];
	for (s = *head; s != NULL; s = s->next)
		if (ns_src_same(&s->addr, a))
			return s;
	if (!create || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	ip_addr_copy(s->addr, *a);
	s->next = *head;
	*head = s;
	return s;
}

static void ns_src_put(struct ns_src *s)
{
	struct ns_src **pp;

	if (s == NULL || s->half_open > 0 || s->conns > 0 || s->orphans > 0)
		return;
	for (pp = &src_tab[ns_src_hash(&s->addr)]; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			free(s);
			return;
		}
	}
}

/* Called by the TCP input hook (ns_hooks.h) for a SYN to a listener. */
int ns_tcp_syn_admit(const ip_addr_t *src)
{
	struct ns_src *s;

	if (ns_tcp_half_open >= NS_TCP_HALF_OPEN_MAX) {
		ns_tcp_syn_drop++;
		return 0;
	}
	s = ns_src_get(src, true);
	if (s == NULL) {
		ns_tcp_syn_drop++;
		return 0;
	}
	/* A source's share counts only once half the stack's handshakes are
	 * pending: one client's burst of connections is not slowed while
	 * nobody competes, and a flooder holds at most half, so every other
	 * source still finds its share. */
	if (s->half_open >= NS_TCP_HALF_OPEN_PER_SRC &&
	    ns_tcp_half_open >= NS_TCP_HALF_OPEN_MAX / 2) {
		ns_tcp_syn_drop++;
		ns_ctx.st.syn_drop_src++;
		return 0;
	}
	s->half_open++;
	ns_tcp_half_open++;
	return 1;
}

/* The handshake from src completed (the accept callback runs). */
void ns_src_handshake_done(const ip_addr_t *src)
{
	struct ns_src *s = ns_src_get(src, false);

	if (ns_tcp_half_open > 0)
		ns_tcp_half_open--;
	if (s != NULL && s->half_open > 0) {
		s->half_open--;
		ns_src_put(s);
	}
}

/* Recounts the half-open handshakes (lwIP drops SYN_RCVD pcbs on timeout
 * or RST without telling us, so the counts only drift upwards): nothing to
 * do while the count is 0. */
void ns_src_recount(void)
{
	struct tcp_pcb *pcb;
	struct ns_src *s, *next;
	u32_t n = 0;
	unsigned i;

	if (ns_tcp_half_open == 0)
		return;
	recounts++;
	for (i = 0; i < NS_SRC_BUCKETS; i++)
		for (s = src_tab[i]; s != NULL; s = s->next)
			s->half_open = 0;
	for (pcb = tcp_active_pcbs; pcb != NULL; pcb = pcb->next) {
		if (pcb->state != SYN_RCVD)
			continue;
		n++;
		if ((s = ns_src_get(&pcb->remote_ip, true)) != NULL)
			s->half_open++;
	}
	ns_tcp_half_open = n;
	for (i = 0; i < NS_SRC_BUCKETS; i++)
		for (s = src_tab[i]; s != NULL; s = next) {
			next = s->next;
			ns_src_put(s);
		}
}

/* Admission of an accepted connection from src: the per-source cap and the
 * budget. Returns the entry to keep (the caller releases it with
 * ns_src_conn_end), or NULL when refused (counted). */
struct ns_src *ns_src_conn_begin(const ip_addr_t *src)
{
	struct ns_src *s;
	size_t share = ns_mem_share();

	s = ns_src_get(src, true);
	if (s == NULL) {
		ns_ctx.st.tcp_refused_mem++;
		return NULL;
	}
	/* Nearly full: only a source below its share gets more. */
	if (!ns_mem_admit_ok() && s->mem + s->lwip_mem >= share - share / 8) {
		ns_ctx.st.tcp_refused_mem++;
		ns_src_put(s);
		return NULL;
	}
	/* Orphans holding data count: closing and reconnecting does not
	 * get around the cap. */
	if (lim.max_conns_per_src > 0 &&
	    s->conns + s->orphans >= lim.max_conns_per_src) {
		ns_ctx.st.tcp_refused_peer++;
		ns_src_put(s);
		return NULL;
	}
	if (s->conns == 0 && s->orphans == 0)
		ns_ctx.src_active++;
	s->conns++;
	return s;
}

void ns_src_conn_end(struct ns_src *s)
{
	if (s == NULL)
		return;
	if (s->conns > 0 && --s->conns == 0 && s->orphans == 0 && ns_ctx.src_active > 0)
		ns_ctx.src_active--;
	ns_src_put(s);
}

/* A connection's queues changed from old to now bytes: its source's (when
 * inbound) part of the budget follows. */
void ns_src_mem_move(struct ns_src *s, size_t old, size_t now)
{
	if (s == NULL)
		return;
	s->mem = s->mem - old + now;
	ns_ctx.mem_in = ns_ctx.mem_in - old + now;
}

/* Over the budget, c is held back (windows at NS_MEM_FLOOR, its socket
 * unread) when its source, or local for a connection that is not inbound,
 * holds its share or more. Someone always does: the shares add up to the
 * budget. */
bool ns_mem_hold(const struct ns_tcp *c)
{
	size_t share;

	if (!ns_mem_over())
		return false;
	share = ns_mem_share();
	if (c->src != NULL)
		return c->src->mem + c->src->lwip_mem >= share;
	return ns_mem_local() >= share;
}

/* ---- what lwIP holds on its own ---- */

/* Orphans: connections the node closed and forgot (ns_tcp_detach cleared
 * their callbacks) whose FIN or data the peer has not acknowledged
 * (FIN_WAIT_1, CLOSING, LAST_ACK). Like Linux's tcp_orphan_retries they
 * get lwIP's limit of 12 retransmissions or unanswered window probes; and
 * since a peer that answers every probe with an ACK of nothing resets
 * those counts, also NS_ORPHAN_IDLE_MS without an ACK that takes data off
 * the queue (ns_hooks.h moves pcb->tmr on those; lwIP stops moving it once
 * the pcb is closed). Over the budget they are the first to go (Linux's
 * tcp_out_of_resources). */
#define NS_ORPHAN_MAXRTX 12

static bool ns_is_orphan(const struct tcp_pcb *pcb)
{
	return pcb->callback_arg == NULL &&
	       (pcb->state == FIN_WAIT_1 || pcb->state == CLOSING || pcb->state == LAST_ACK);
}

static bool ns_orphan_expired(const struct tcp_pcb *pcb)
{
	return pcb->nrtx >= NS_ORPHAN_MAXRTX || pcb->persist_probe >= NS_ORPHAN_MAXRTX ||
	       (u32_t)(tcp_ticks - pcb->tmr) > NS_ORPHAN_IDLE_MS / TCP_SLOW_INTERVAL;
}

static size_t ns_pbuf_cost(const struct pbuf *p)
{
	return p == NULL ? 0 : p->tot_len + (size_t)pbuf_clen(p) * NS_PBUF_OVERHEAD;
}

/* An orphan's send queue. */
static size_t ns_orphan_bytes(const struct tcp_pcb *pcb)
{
	return (size_t)(TCP_SND_BUF - pcb->snd_buf) +
	       (size_t)pcb->snd_queuelen * NS_PBUF_OVERHEAD;
}

/* Out-of-order segments and data the application refused. */
static size_t ns_held_bytes(const struct tcp_pcb *pcb)
{
	const struct tcp_seg *sg;
	size_t n = ns_pbuf_cost(pcb->refused_data);

	for (sg = pcb->ooseq; sg != NULL; sg = sg->next)
		n += ns_pbuf_cost(sg->p);
	return n;
}

/* c's pcb is about to become an orphan (splice.c, before tcp_close, which
 * in these states keeps the pcb): charged now, and counted against its
 * source's cap, until the next sweep measures it. */
void ns_mem_orphan_begin(struct ns_tcp *c, struct tcp_pcb *pcb)
{
	size_t n;

	if (pcb->state != FIN_WAIT_1 && pcb->state != CLOSING && pcb->state != LAST_ACK)
		return;
	if (pcb->unsent == NULL && pcb->unacked == NULL)
		return;
	n = ns_orphan_bytes(pcb);
	ns_ctx.mem_lwip += n;
	if (c->src == NULL) {
		ns_ctx.mem_lwip_local += n;
		return;
	}
	c->src->lwip_mem += n;
	c->src->orphans++; /* c still holds a conn: src_active is unchanged */
}

/* Once a second (ns_check_timeouts): resets expired orphans, measures what
 * lwIP holds per source, and over the budget resets the orphans that hold
 * data. One walk over the connections. */
void ns_mem_sweep(void)
{
	struct tcp_pcb *pcb, *next;
	struct ns_src *s, *snext;
	size_t total = 0, local = 0;
	u32_t active = 0;
	bool over_pass = false;
	unsigned i;

again:
	for (i = 0; i < NS_SRC_BUCKETS; i++)
		for (s = src_tab[i]; s != NULL; s = s->next)
			s->lwip_mem = 0, s->orphans = 0;
	total = local = 0;
	for (pcb = tcp_active_pcbs; pcb != NULL; pcb = next) {
		size_t n;

		next = pcb->next;
		if (pcb->state == SYN_RCVD || pcb->state == SYN_SENT)
			continue; /* callback_arg is the listener's, or no data */
		if (!ns_is_orphan(pcb)) {
			n = ns_held_bytes(pcb);
			s = pcb->callback_arg != NULL
			        ? ((struct ns_tcp *)pcb->callback_arg)->src
			        : NULL;
		} else {
			n = ns_held_bytes(pcb) + ns_orphan_bytes(pcb);
			if (ns_orphan_expired(pcb) || (over_pass && n > 0)) {
				ns_ctx.st.orphan_reset++;
				tcp_abort(pcb); /* unlinks and frees only this pcb */
				continue;
			}
			s = ns_src_get(&pcb->remote_ip, true);
			if (s != NULL && (pcb->unsent != NULL || pcb->unacked != NULL))
				s->orphans++;
		}
		total += n;
		if (s != NULL)
			s->lwip_mem += n;
		else
			local += n;
	}
	ns_ctx.mem_lwip = total;
	ns_ctx.mem_lwip_local = local;
	ns_mem_note_peak();
	if (!over_pass && ns_mem_over() && total > 0) {
		over_pass = true;
		goto again;
	}
	for (i = 0; i < NS_SRC_BUCKETS; i++)
		for (s = src_tab[i]; s != NULL; s = snext) {
			snext = s->next;
			if (s->conns > 0 || s->orphans > 0)
				active++;
			ns_src_put(s);
		}
	ns_ctx.src_active = active;
}

/* Forgets every source (ns_shutdown, after every connection is gone). */
void ns_src_clear(void)
{
	struct ns_src *s;
	unsigned i;

	for (i = 0; i < NS_SRC_BUCKETS; i++)
		while ((s = src_tab[i]) != NULL) {
			src_tab[i] = s->next;
			free(s);
		}
}
