/* lwIP build options for meshproxy: lwIP terminates TCP inside a user-space
 * WireGuard node (one point-to-point netif, no link layer), driven from a
 * libevent loop without threads. Sized for a proxy that carries thousands of
 * connections at tunnel speed; the reasoning for each block is next to it.
 * Read by lwIP's opt.h: anything not set here takes lwIP's default. */
#ifndef MESH_LWIPOPTS_H
#define MESH_LWIPOPTS_H

/* ---- system: one thread, one event loop, raw API only ---- */
#define NO_SYS               1
#define SYS_LIGHTWEIGHT_PROT 0 /* with NO_SYS 1 there is nothing to protect */
#define LWIP_TIMERS          1 /* sys_check_timeouts() from a libevent timer */
#define LWIP_NETCONN         0
#define LWIP_SOCKET          0
#define LWIP_NETIF_API       0
#define LWIP_CALLBACK_API    1

/* ---- memory: the C heap, no static pools ---- */
/* Pools and the lwIP heap become malloc(). lwIP does not count pool
 * elements then: MEMP_NUM_* below only document the scale we expect (and
 * keep init.c's sanity checks meaningful); nothing is preallocated and
 * nothing is capped by them. The caps that bound memory are elsewhere:
 * NS_TCP_MAX connections and NS_RXQ_MAX_PBUFS per receive queue
 * (netstack/ns_priv.h), the listen backlog for half-open connections,
 * TCP_WND/TCP_SND_BUF per connection, TCP_OOSEQ_MAX_*, IP_REASS_MAX_PBUFS,
 * and TIME_WAIT's length (TCP_MSL). */
#define MEM_LIBC_MALLOC         1
#define MEMP_MEM_MALLOC         1
#define MEM_ALIGNMENT           8
#define MEMP_NUM_RAW_PCB        8
#define MEMP_NUM_UDP_PCB        256
#define MEMP_NUM_TCP_PCB        16384
#define MEMP_NUM_TCP_PCB_LISTEN 64
#define MEMP_NUM_TCP_SEG        65535
#define MEMP_NUM_PBUF           4096
#define MEMP_NUM_SYS_TIMEOUT    (LWIP_NUM_SYS_TIMEOUT_INTERNAL + 8)
#define PBUF_POOL_SIZE          256
/* No link layer: IP headers start the packet. */
#define PBUF_LINK_HLEN               0
#define PBUF_LINK_ENCAPSULATION_HLEN 0

/* ---- interfaces ---- */
#define LWIP_ARP                   0
#define LWIP_ETHERNET              0
#define LWIP_DHCP                  0
#define LWIP_AUTOIP                0
#define LWIP_IGMP                  0
#define LWIP_DNS                   0
#define LWIP_NETIF_LOOPBACK        0
#define LWIP_HAVE_LOOPIF           0
#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK   0
/* TCP segments are built in one pbuf with room for headers, so the output
 * callback can usually hand the packet on without flattening a chain. */
#define LWIP_NETIF_TX_SINGLE_PBUF 1

/* ---- IPv4 ---- */
#define LWIP_IPV4           1
#define IP_FORWARD          0
#define IP_REASSEMBLY       1
#define IP_FRAG             1
#define IP_REASS_MAXAGE     15
#define IP_REASS_MAX_PBUFS  64 /* bounds the memory of half-built datagrams */
#define MEMP_NUM_REASSDATA  16
#define IP_DEFAULT_TTL      64
#define LWIP_ICMP           1
#define LWIP_BROADCAST_PING 0
#define LWIP_MULTICAST_PING 0

/* ---- IPv6 on a point-to-point link: no ND, MLD, SLAAC or DAD ---- */
/* Output goes straight to netif->output_ip6 (our callback), so neighbour
 * discovery is never consulted for sending; nd6.c is still compiled (lwIP
 * has no switch for it) and answers a stray neighbour solicitation. The
 * addresses are set PREFERRED by ns.c at once, so DAD is off. Router
 * advertisements must not change our MTU. */
#define LWIP_IPV6               1
#define LWIP_IPV6_NUM_ADDRESSES 3
#define LWIP_IPV6_FORWARD       0
#define LWIP_IPV6_FRAG          1
/* Required on 64-bit: the reassembly helper is bigger than the fragment
 * header. */
#define IPV6_FRAG_COPYHEADER          1
#define LWIP_IPV6_REASS               1
#define LWIP_IPV6_AUTOCONFIG          0
#define LWIP_IPV6_ADDRESS_LIFETIMES   0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_IPV6_MLD                 0
#define LWIP_IPV6_DHCP6               0
#define LWIP_ND6_ALLOW_RA_UPDATES     0
#define LWIP_ND6_QUEUEING             0
#define LWIP_ICMP6                    1
#define LWIP_ICMP6_HL                 64

/* ---- UDP, RAW (ping) ---- */
#define LWIP_UDP     1
#define LWIP_UDPLITE 0
#define LWIP_RAW     1

/* ---- TCP ---- */
#define LWIP_TCP 1
/* The tunnel MTU is 1420 by default: 1420 - 40 (IPv4+TCP). This is the
 * ceiling; lwIP lowers the MSS it announces and uses to the netif MTU minus
 * the IP and TCP headers (TCP_CALCULATE_EFF_SEND_MSS), so IPv6 gets 1360. */
#define TCP_MSS 1380
/* lwIP runs its TCP timers every TCP_TMR_INTERVAL ms (delayed ACK) and its
 * retransmission clock at twice that. The default (250 ms, so RTOs in 500 ms
 * ticks) turns every burst loss into a stall of a second or more: lwIP has
 * no SACK-based recovery, so holes past the first are repaired by the RTO.
 * With a 10 ms tick a 64 MiB upload to a wireguard-go peer whose UDP socket
 * overflows went from 18 to 274 Mbit/s (bench/results). The timer only runs
 * while TCP connections exist. */
#define TCP_TMR_INTERVAL           10
#define TCP_CALCULATE_EFF_SEND_MSS 1
/* A 1 MiB window (scale 5: 1048576 >> 5 = 32768 fits 16 bits) covers
 * ~170 Mbit/s at 50 ms RTT per connection. It is also the memory bound per
 * connection in each direction: the receive queue never holds more than the
 * window (netstack/splice.c only tcp_recved()s what the socket took), and the
 * send side reads the socket only while tcp_sndbuf() has room. */
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE  5
#ifndef MESH_TCP_BUF /* -DMESH_TCP_BUF=bytes for A/B measurements */
#define MESH_TCP_BUF (1024 * 1024)
#endif
#define TCP_WND     MESH_TCP_BUF
#define TCP_SND_BUF MESH_TCP_BUF
/* Room for 4 segments per MSS of buffer: small writes share segments thanks
 * to TCP_OVERSIZE, but a trickle of tiny writes must not hit the queue limit
 * before the byte limit. Must fit u16 (it does: 3040). */
#define TCP_SND_QUEUELEN ((4 * TCP_SND_BUF + TCP_MSS - 1) / TCP_MSS)
/* lwIP derives TCP_SNDLOWAT from TCP_SND_BUF, which for a large buffer
 * overflows the u16 sanity check; splice.c uses it as the hysteresis for
 * resuming reads from the local socket. */
#define TCP_SNDLOWAT      (16 * TCP_MSS)
#define TCP_SNDQUEUELOWAT (TCP_SND_QUEUELEN / 2)
#define TCP_OVERSIZE      TCP_MSS
#define TCP_QUEUE_OOSEQ   1
/* Out-of-order data is bounded by the window in bytes and in pbufs (a peer
 * sending 1-byte segments must not make 1 M tiny allocations). */
#define TCP_OOSEQ_MAX_BYTES   TCP_WND
#define TCP_OOSEQ_MAX_PBUFS   1024
/* ... and by ns_hook_ooseq_bytes_limit (ns_hooks.h) to much less. */
#define TCP_OOSEQ_BYTES_LIMIT(pcb) ns_hook_ooseq_bytes_limit(pcb)
#define LWIP_TCP_SACK_OUT     1 /* lets the peer repair losses in one RTT */
#define LWIP_TCP_MAX_SACK_NUM 4
/* lwIP's per-listener backlog is a u8_t: a burst of more than 255 SYNs to
 * one port (a client opening 1,000 connections at once) would lose SYNs
 * and cost each a retransmission timeout. Instead the TCP input hook
 * (ns_hooks.h) caps half-open connections for the whole stack. */
#define TCP_LISTEN_BACKLOG   0
#define NS_TCP_HALF_OPEN_MAX 4096
/* ... and once half of them are pending, a source address that has this
 * many gets no more (netstack/limits.c): one peer's SYN flood holds at
 * most half, and everyone else's handshakes still go through. */
#define NS_TCP_HALF_OPEN_PER_SRC 256
/* Connections we close first sit in TIME_WAIT for 2 * TCP_MSL (lwIP's
 * default MSL is 60 s), one pcb (~250 bytes) each and uncapped with heap
 * pools: 30 s gives Linux's 60 s TIME_WAIT. */
#define TCP_MSL             30000UL
/* Retransmissions before a connection is given up. lwIP counts them, and
 * its RTO backoff stops at 2^7 times the smoothed RTO, which with the 10 ms
 * tick is ~7.7 s on a LAN path: lwIP's 12 gave up after ~46 s, so a
 * one-minute WireGuard outage killed every proxied connection
 * (tests/e2e/outage.sh). With 120, live connections are bounded by the
 * keepalive below instead (8 minutes without a segment from the peer);
 * unanswered zero-window probes last ~4.5 minutes; connections the node
 * already closed keep a limit of 12 (ns.c, ns_check_timeouts). */
#ifdef MESH_LWIP_INIT_C
/* init.c's sanity check (TCP_MAXRTX <= 12 "due to tcp_backoff table")
 * predates lwIP 2.1's bound on that table's index (tcp.c: backoff_idx =
 * LWIP_MIN(nrtx, sizeof(tcp_backoff) - 1)); only init.c is built with
 * MESH_LWIP_INIT_C (third_party/lwip.mk, tests/fuzz/fuzz.mk), and it uses
 * TCP_MAXRTX for nothing else. */
#define TCP_MAXRTX 12
#else
#define TCP_MAXRTX 120
#endif
#define TCP_SYNMAXRTX       6
#define TCP_TTL             64
#define LWIP_TCP_TIMESTAMPS 0
/* Keepalive on every connection we carry, so a vanished mesh peer frees its
 * connections: first probe after 5 min idle, then 6 probes 30 s apart. */
#define LWIP_TCP_KEEPALIVE                 1
#define TCP_KEEPIDLE_DEFAULT               300000UL
#define TCP_KEEPINTVL_DEFAULT              30000UL
#define TCP_KEEPCNT_DEFAULT                6U
#define LWIP_RANDOMIZE_INITIAL_LOCAL_PORTS 1
/* Unpredictable initial sequence numbers (lwIP's default is a counter). */
#define LWIP_HOOK_TCP_ISN(local_ip, local_port, remote_ip, remote_port)                  \
	((u32_t)arc4random())
/* Options after the handshake are blanked before lwIP parses them: see
 * netstack/ns_hooks.h for the two remote-triggerable assertions this avoids. */
#define LWIP_HOOK_FILENAME "ns_hooks.h"
#define LWIP_HOOK_TCP_INPACKET_PCB(pcb, hdr, optlen, opt1len, opt2, p)                   \
	ns_hook_tcp_inpacket(pcb, hdr, optlen, opt1len, opt2, p)

/* ---- checksums ---- */
/* Inbound packets were authenticated by WireGuard (Poly1305) and the
 * allowed-IPs check, so verifying IP/TCP/UDP/ICMP checksums again buys
 * nothing. Outbound checksums are generated: the peer's kernel checks them.
 * Checksums of TCP data are folded into the copy done by tcp_write. */
#ifndef MESH_CHECKSUM_CHECK /* -DMESH_CHECKSUM_CHECK=1 for A/B measurements */
#define MESH_CHECKSUM_CHECK 0
#endif
#define CHECKSUM_CHECK_IP     MESH_CHECKSUM_CHECK
#define CHECKSUM_CHECK_UDP    MESH_CHECKSUM_CHECK
#define CHECKSUM_CHECK_TCP    MESH_CHECKSUM_CHECK
#define CHECKSUM_CHECK_ICMP   MESH_CHECKSUM_CHECK
#define CHECKSUM_CHECK_ICMP6  MESH_CHECKSUM_CHECK
#define CHECKSUM_GEN_IP       1
#define CHECKSUM_GEN_UDP      1
#define CHECKSUM_GEN_TCP      1
#define CHECKSUM_GEN_ICMP     1
#define CHECKSUM_GEN_ICMP6    1
#define LWIP_CHECKSUM_ON_COPY 1

/* ---- statistics and debugging ---- */
/* netstack keeps its own counters (ns_get_stats). Assertions stay on unless
 * NDEBUG is defined: they catch lwIP misuse and known lwIP traps early. */
/* Only lwIP's MIB2 counters are on, for one number: udpNoPorts (datagrams
 * to a port nobody bound, ns_stats.udp_drop). Each is a plain increment. */
#define LWIP_STATS         1
#define LWIP_STATS_DISPLAY 0
#define MIB2_STATS         1
#define LINK_STATS         0
#define ETHARP_STATS       0
#define IP_STATS           0
#define IPFRAG_STATS       0
#define ICMP_STATS         0
#define IGMP_STATS         0
#define UDP_STATS          0
#define TCP_STATS          0
#define MEM_STATS          0
#define MEMP_STATS         0
#define SYS_STATS          0
#define IP6_STATS          0
#define ICMP6_STATS        0
#define IP6_FRAG_STATS     0
#define MLD6_STATS         0
#define ND6_STATS          0
#ifdef NDEBUG
#ifdef MESH_FUZZING
#error "the fuzzers run with lwIP's assertions on: build them without NDEBUG"
#endif
#define LWIP_NOASSERT 1
#endif

#endif
