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
 * nothing still moves. */
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
	return ns_ctx.mem_rx + ns_ctx.mem_tx + ns_ctx.mem_ext;
}

bool ns_mem_over(void)
{
	return ns_mem_used() >= ns_mem_limit();
}

int ns_mem_pressure(void) /* for lwIP's ooseq limit (ns_hooks.h) */
{
	return ns_mem_over() ? 1 : 0;
}

/* New work is turned away before the budget is reached, so that the
 * connections already admitted keep room to move. */
static bool ns_mem_admit_ok(void)
{
	return ns_mem_used() < ns_mem_limit() - ns_mem_limit() / 8;
}

bool ns_mem_admit(void)
{
	if (ns_mem_admit_ok())
		return true;
	ns_ctx.st.front_refused_mem++;
	return false;
}

void ns_mem_charge(size_t bytes)
{
	ns_ctx.mem_ext += bytes;
	ns_mem_note_peak();
}

void ns_mem_uncharge(size_t bytes)
{
	ns_ctx.mem_ext -= bytes < ns_ctx.mem_ext ? bytes : ns_ctx.mem_ext;
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

	if (s == NULL || s->half_open > 0 || s->conns > 0)
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

	if (!ns_mem_admit_ok()) {
		ns_ctx.st.tcp_refused_mem++;
		return NULL;
	}
	s = ns_src_get(src, true);
	if (s == NULL) {
		ns_ctx.st.tcp_refused_mem++;
		return NULL;
	}
	if (lim.max_conns_per_src > 0 && s->conns >= lim.max_conns_per_src) {
		ns_ctx.st.tcp_refused_peer++;
		ns_src_put(s);
		return NULL;
	}
	s->conns++;
	return s;
}

void ns_src_conn_end(struct ns_src *s)
{
	if (s == NULL)
		return;
	if (s->conns > 0)
		s->conns--;
	ns_src_put(s);
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
