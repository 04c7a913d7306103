/* netcheck's state, shared by the run (netcheck.c), its probes
 * (netcheck_probe.c) and the report (netcheck_report.c). Private to
 * core/netcheck/. */
#ifndef MESH_NETCHECK_INT_H
#define MESH_NETCHECK_INT_H

#include <event2/dns.h>
#include <event2/event.h>

#include "core/netcheck/netcheck.h"
#include "core/stun/stun.h"

/* A target answered, but a probe is still out: wait for it this long past
 * its send (at least), or twice the best RTT seen, whichever is longer. */
#define NC_LATE_GRACE_US 100000u

enum { NC_V4, NC_V6, NC_FAMILIES };

/* The STUN probes of one relay over one address family. */
struct nc_target {
	bool active; /* we have its address and a socket to send from */
	bool dead;   /* sending failed: nothing more to wait for */
	struct sockaddr_storage addr;
	socklen_t alen;
	uint8_t n_sent, n_answered;
	uint8_t txid[NETCHECK_PROBES][STUN_TXID_LEN];
	uint64_t sent_us[NETCHECK_PROBES];
	bool answered[NETCHECK_PROBES];
	uint32_t best_us;
	bool has_mapped;
	struct sockaddr_storage mapped;
};

enum nc_tcp { NC_TCP_NONE, NC_TCP_RUNNING, NC_TCP_OK, NC_TCP_FAILED };

/* The user data of one evdns request: it outlives a cancelled run, since
 * libevent calls back (with EVUTIL_EAI_CANCEL) from a later loop pass. */
struct nc_dns_ticket {
	struct nc_relay *rl; /* NULL once the run is gone */
};

enum nc_state { NC_RESOLVING, NC_PROBING, NC_SETTLED };

struct nc_relay {
	struct netcheck *nc;
	struct netcheck_relay cfg;
	enum nc_state state;
	bool resolved;
	struct nc_dns_ticket *ticket;
	struct evdns_getaddrinfo_request *dns_req;
	struct sockaddr_storage ip[NC_FAMILIES]; /* port 0; family 0: none */
	uint64_t start_us;                       /* probing began */
	struct nc_target t[NC_FAMILIES];
	enum nc_tcp tcp;
	int tcp_fd;
	struct event *tcp_ev;
	uint64_t tcp_start_us;
	uint32_t tcp_rtt_us;
};

struct netcheck {
	struct netcheck_config cfg; /* relays: not kept, copied into rl */
	struct nc_relay *rl;
	size_t n;
	bool can[NC_FAMILIES]; /* a family we can still send on */
	int fd[NC_FAMILIES];   /* our own sockets (cfg.send NULL), else -1 */
	struct event *read_ev[NC_FAMILIES];
	struct event *tick_ev, *deadline_ev, *finish_ev;
	uint64_t start_us;
	uint32_t tcp_after_us;
	bool finished; /* done has been called (or is being) */
	struct netcheck_report rep;
};

uint64_t nc_now_us(void);

/* netcheck_probe.c: sockets, STUN requests and answers, TCP connects. */
int nc_sockets_open(struct netcheck *nc, char *err, size_t errlen);
void nc_sockets_close(struct netcheck *nc);
void nc_stun_send(struct netcheck *nc, struct nc_relay *rl, struct nc_target *t);
bool nc_stun_answer(struct netcheck *nc, const uint8_t *p, size_t len,
                    const struct sockaddr *from);
void nc_tcp_start(struct netcheck *nc, struct nc_relay *rl);
void nc_tcp_stop(struct nc_relay *rl);

/* netcheck.c: re-examines one relay after something happened to it. */
void nc_relay_poke(struct netcheck *nc, struct nc_relay *rl);

/* netcheck_report.c: the report from the relays' state. */
void nc_report_build(struct netcheck *nc);

#endif
