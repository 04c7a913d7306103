/* netcheck: what the network between this host and the mesh's relays looks
 * like, and which relay should be home. For each relay of the map, in
 * parallel:
 *
 *   - STUN: NETCHECK_PROBES Binding requests, NETCHECK_PROBE_GAP_MS apart,
 *     each with a new random transaction id, to host:stun_port over every
 *     address family we can send on. An answer counts only if it comes from
 *     the address the request went to and carries a transaction id we sent
 *     there and have not seen answered; the RTT is the best of the answers,
 *     and XOR-MAPPED-ADDRESS is the address that server saw us as.
 *   - TCP: the time a plain connect() to host:port takes (then closed), for
 *     relays without a STUN port, for those whose STUN has not answered
 *     NETCHECK_TCP_AFTER_MS after the first request (UDP blocked), and for
 *     every relay when tcp_always is set (the CLI shows both numbers).
 *
 * Then: UDP works if any STUN server answered; the mapping varies by
 * destination (endpoint-dependent mapping: a hard NAT) if servers at
 * different IP addresses saw different mapped addresses from our one
 * socket; home is the region with the lowest latency (STUN RTT, else TCP
 * connect time), except that the current home (preferred_id) is kept while
 * it answers unless another region is better by more than
 * NETCHECK_SWITCH_MIN_MS and by more than a third, so that the home relay
 * does not flap between regions of similar latency.
 *
 * Bounded: at most NETCHECK_RELAYS_MAX relays (more is an error), every
 * datagram is parsed by core/stun within its length, and anything that is
 * not an answer we wait for is counted and dropped. The whole run ends by
 * timeout_ms; done() is called exactly once, from the event loop (never
 * from netcheck_start), also for zero relays. */
#ifndef MESH_NETCHECK_H
#define MESH_NETCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETCHECK_RELAYS_MAX    256 /* as CTL_RELAYS_MAX */
#define NETCHECK_PROBES        3
#define NETCHECK_PROBE_GAP_MS  100
#define NETCHECK_TCP_AFTER_MS  1000 /* at most a third of the timeout */
#define NETCHECK_TIMEOUT_MS    3000 /* default for the whole run */
#define NETCHECK_SWITCH_MIN_MS 10   /* hysteresis: better by more than this */
#define NETCHECK_REGION_MAX    64   /* as CTL_LABEL_MAX */
#define NETCHECK_HOST_MAX      254  /* as CTL_DNSNAME_MAX */

struct event_base;
struct evdns_base;
struct netcheck;

struct netcheck_relay {
	uint32_t id; /* nonzero */
	char region[NETCHECK_REGION_MAX];
	char name[NETCHECK_REGION_MAX]; /* "" if the map has none */
	char host[NETCHECK_HOST_MAX];   /* a name (needs dns) or an IP literal */
	uint16_t port;                  /* the relay's TCP port */
	uint16_t stun_port;             /* 0: no STUN */
	bool tls;
};

/* Sends one STUN datagram from the node's own UDP socket (so the mapped
 * address is that socket's). Returns >= 0, or a negative errno: a family
 * it cannot send on (-EAFNOSUPPORT) is not probed again. */
typedef int (*netcheck_send_fn)(void *ctx, const struct sockaddr *to, socklen_t tolen,
                                const uint8_t *buf, size_t len);

struct netcheck_relay_result {
	uint32_t id;
	char region[NETCHECK_REGION_MAX];
	char name[NETCHECK_REGION_MAX];
	char host[NETCHECK_HOST_MAX];
	uint16_t port, stun_port;
	bool resolved; /* host had an address we could use */
	bool udp_ok;   /* a STUN answer */
	uint32_t stun_rtt_us;
	bool tcp_tried;
	bool tcp_ok;
	uint32_t tcp_rtt_us;
	bool has_mapped; /* mapped: as the IPv4 server saw us, else IPv6 */
	struct sockaddr_storage mapped;
};

struct netcheck_report {
	bool udp;                /* any STUN answer */
	bool ipv4, ipv6;         /* answers per family */
	bool has_mapping_varies; /* servers at >= 2 addresses of one family answered */
	bool mapping_varies;     /* ... and saw different mapped addresses */
	struct sockaddr_storage global_v4, global_v6; /* ss_family 0: unknown */
	uint32_t home_id;                             /* 0: no relay answered */
	char home_region[NETCHECK_REGION_MAX];
	uint32_t home_latency_us;
	/* Datagrams handed to us that were not an answer we waited for. */
	uint64_t ignored_bad;    /* not a well-formed STUN Binding success, or its
	                          * mapped address is unusable (port 0,
	                          * unspecified, multicast, other family) */
	uint64_t ignored_source; /* from an address we sent no request to */
	uint64_t ignored_txid;   /* a transaction id we did not send (or late) */
	size_t n;
	struct netcheck_relay_result r[NETCHECK_RELAYS_MAX]; /* in map order */
};

struct netcheck_config {
	struct event_base *base;
	struct evdns_base *dns;              /* NULL: relay hosts must be IP literals */
	const struct netcheck_relay *relays; /* copied */
	size_t n_relays;
	/* NULL: the engine opens its own UDP sockets (IPv4, and IPv6 if the
	 * host has it) and reads them; else STUN leaves through send and the
	 * answers come back through netcheck_input. */
	netcheck_send_fn send;
	void *send_ctx;
	uint32_t timeout_ms;   /* 0: NETCHECK_TIMEOUT_MS */
	bool tcp_always;       /* also time TCP to relays that answer STUN */
	uint32_t preferred_id; /* the current home relay, 0: none */
	/* The report is valid until netcheck_free; done may call it. */
	void (*done)(void *ctx, const struct netcheck_report *r);
	void *ctx;
};

/* Starts a run. NULL with a sentence in err: too many relays, a relay
 * without an id, no event base or done, no socket. A relay whose host
 * cannot be resolved is reported (resolved false), not an error. */
struct netcheck *netcheck_start(const struct netcheck_config *cfg, char *err,
                                size_t errlen);

/* A STUN datagram that arrived on the node's socket (it demultiplexes with
 * stun_is_message). True if it answered one of our requests; anything
 * else is counted in the report's ignored_* and false is returned. */
bool netcheck_input(struct netcheck *nc, const uint8_t *p, size_t len,
                    const struct sockaddr *from);

/* The run so far (the final report once done has been called). */
const struct netcheck_report *netcheck_report(const struct netcheck *nc);

/* Cancels the run (done is not called) and frees everything; NULL is fine. */
void netcheck_free(struct netcheck *nc);

/* Home choice alone (exported for tests): fills r->home_* from r->r[]. */
void netcheck_pick_home(struct netcheck_report *r, uint32_t preferred_id);

#endif
