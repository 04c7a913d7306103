/* Notices when the host's resolver configuration (/etc/resolv.conf)
 * changes, so the node re-reads it (review: it was read once, and a laptop
 * that changed networks kept asking the old server until restarted).
 *
 * The file is usually replaced by a rename (NetworkManager, dhclient,
 * resolvconf), which a watch on the file alone misses, and sometimes
 * rewritten in place or bind-mounted (containers), which a watch on the
 * directory alone misses: both are watched with inotify, and the file's
 * watch follows the new inode after each change. Changes come in bursts,
 * so the callback runs 200 ms after the last event and at most once a
 * second. */
#ifndef MESH_RESOLV_WATCH_H
#define MESH_RESOLV_WATCH_H

struct event_base;
struct resolv_watch;

typedef void (*resolv_watch_fn)(void *ctx);

/* Watches path (e.g. "/etc/resolv.conf"). NULL when inotify is not
 * available (logged at debug level): SIGHUP still reloads. */
struct resolv_watch *resolv_watch_new(struct event_base *base, const char *path,
                                      resolv_watch_fn fn, void *ctx);
void resolv_watch_free(struct resolv_watch *w); /* accepts NULL */

#endif
