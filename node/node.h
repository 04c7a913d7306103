/* The running node: configuration -> WireGuard device -> lwIP netstack ->
 * front-ends (SOCKS5, HTTP CONNECT, tunnels) and the local API, on one
 * libevent loop. */
#ifndef MESH_NODE_H
#define MESH_NODE_H

#include <stdbool.h>

struct node_ctl_args;

struct node_opts {
	const char *config_path;
	/* mesh-proxy up --state DIR: joined to mesh-control (config_path, if
	 * any, is inside ctl); NULL: a static configuration file. */
	const struct node_ctl_args *ctl;
	const char *api_path; /* NULL: api_default_path() */
	/* --health-listen ADDR:PORT: /livez, /readyz and /metrics over HTTP on
	 * their own listener; NULL: none. */
	const char *health_listen;
	/* --metrics-peers: /metrics has per-peer series (labelled with peer
	 * names); off by default, since they name the mesh to whoever can
	 * reach the listener and grow with the mesh. */
	bool metrics_peers;
};

/* node_run's answer when the node must start over in the same process
 * (mesh-control gave it new addresses): call node_run again. */
#define NODE_RC_RESTART (-100)

/* Runs until SIGINT/SIGTERM. Returns a process exit code, or
 * NODE_RC_RESTART. */
int node_run(const struct node_opts *o);

#endif
