/* An evhttp server's connection cap (mesh-control's admin API, the
 * health listeners of all three programs). libevent 2.1's evhttp has none, and it
 * tells its user nothing when a connection opens or closes. This module
 * hands evhttp the bufferevent of each new connection (evhttp_set_bevcb),
 * learns its socket right after, and counts the sockets that are still
 * open; at the cap it stops the listener (more connections wait in the
 * kernel's backlog) and looks again every 100 ms. It also pauses the
 * listener for 100 ms when accept() fails (EMFILE...), which would
 * otherwise spin the loop. A connection must complete a request within
 * HTTP_CONNS_REQUEST_S of being opened, and of its previous request (plus
 * the write timeout, for that one's response), or it is shut down. */
#ifndef MESH_HTTP_CONNS_H
#define MESH_HTTP_CONNS_H

#include <stddef.h>

struct event_base;
struct evconnlistener;
struct bufferevent;
struct http_conns;

/* lis: evhttp's listener (borrowed); what names the server in the log
 * ("mesh-control: admin API"). NULL when out of memory. */
struct http_conns *http_conns_new(struct event_base *base, struct evconnlistener *lis,
                                  size_t cap, const char *what);
void http_conns_free(struct http_conns *ac); /* accepts NULL */
/* For evhttp_set_bevcb(http, http_conns_bevcb, ac). */
struct bufferevent *http_conns_bevcb(struct event_base *base, void *arg);
#define HTTP_CONNS_REQUEST_S 10

/* A request came in on the connection with socket fd: its deadline starts
 * again (HTTP_CONNS_REQUEST_S plus the write timeout given below). */
void http_conns_served(struct http_conns *ac, int fd);
void http_conns_set_write_timeout(struct http_conns *ac, int s);
/* For probes and scrapers (the health listeners): a connection lives at
 * most HTTP_CONNS_REQUEST_S from its opening whatever it sends (requests do
 * not extend it), and at the cap connections waiting in the backlog make
 * open ones be shut down within a few ms: at most one per waiting
 * connection, only of a source (IPv4 address, IPv6 /64) holding more than
 * cap / (sources + 1), the source holding the most first, never a source's
 * last connection; within a source, idle before busy (a response the peer
 * has not acknowledged for 1 s counts as idle), then the oldest. So
 * neither keep-alive clients nor a connect flood from a few addresses can
 * hold every slot and starve a kubelet's probe. What it does not withstand:
 * a flood faster than the server accepts and answers (the listener is
 * re-armed every 1 ms while connections wait, cap at a time: measured
 * about 10,000 connections a second with the flood on the same 2 cores)
 * fills the backlog and SYNs are dropped; cap distinct sources holding
 * one connection each fill it for HTTP_CONNS_REQUEST_S. Hence a
 * NetworkPolicy for the health port (README). With nothing waiting, no
 * timer runs. mesh-control's admin API keeps the default: its clients are
 * operators with a key, a request there may take long, and cutting one off
 * mid-session would break a command; it only waits in the backlog. */
void http_conns_set_probe_mode(struct http_conns *ac);
/* Connections shut down to make room for a waiting one, since the start. */
unsigned long long http_conns_replaced(struct http_conns *ac);
/* Connections shut down at their deadline, since the start. */
unsigned long long http_conns_expired(struct http_conns *ac);
/* Connections open now. */
size_t http_conns_open(struct http_conns *ac);

#endif
