/* `mesh-proxy netcheck [--state DIR] [--json] [--timeout MS]`: measures
 * the way to the mesh's relays from this host, in this process (no running
 * node needed, no root): the relays come from the state directory's last
 * network map (netmap.json). */
#ifndef MESH_CLI_NETCHECK_H
#define MESH_CLI_NETCHECK_H

/* argv[0] is the program, argv[1] "netcheck". Returns the exit code: 0
 * (a report was printed), 1 (no map, no relay, no socket), 2 (usage). */
int cli_netcheck(int argc, char **argv);

#endif
