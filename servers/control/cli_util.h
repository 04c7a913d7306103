/* Helpers for mesh-control's command line (servers/control/main.c): the
 * pure parsing and formatting parts, kept here so they are testable. */
#ifndef MESH_CTL_CLI_UTIL_H
#define MESH_CTL_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/token.h"
#include "servers/control/store.h"

/* Creates path (must not exist, no symlink followed) with mode 0600 and
 * writes text, fsynced. 0, or -errno (-EEXIST if it exists). */
int ctl_cli_write_new_file(const char *path, const char *text);
/* "host:port" or "[v6]:port" -> host (brackets removed, printable ASCII, at
 * most 253 characters, hostcap bytes) and port 1..65535. */
bool ctl_cli_split_hostport(const char *s, char *host, size_t hostcap, uint16_t *port);
/* The longest list of control addresses as text: CTL_TOKEN_ADDRS_MAX
 * "[host]:port" joined by commas, and the NUL. */
#define CTL_CLI_ADDRS_TEXT_MAX (CTL_TOKEN_ADDRS_MAX * (CTL_TOKEN_HOST_MAX + 9) + 1)
/* "HOST:PORT[,HOST:PORT...]" (init --listen, control.conf's listen, token
 * --control) -> tok's control addresses, in that order (tok holds none
 * yet). false with a sentence in err (what names the option or file): an
 * item that is not HOST:PORT, more than CTL_TOKEN_ADDRS_MAX, one twice. */
bool ctl_cli_parse_addrs(const char *list, const char *what, struct ctl_token *tok,
                         char *err, size_t errlen);
/* The first item of such a list into out (cap bytes). */
void ctl_cli_first_addr(const char *list, char *out, size_t cap);
/* control.conf's listen: a second `listen` line appends to the first (init
 * writes one line per address when a single line would pass the INI
 * reader's 200 characters). false when dst (cap) cannot hold it. */
bool ctl_cli_conf_listen_add(char *dst, size_t cap, const char *value);
/* "30s", "10m", "2h", "7d" -> seconds (1 .. 3650 days); -1 if malformed. */
int64_t ctl_cli_parse_dur(const char *s);
/* "a,b" (or "tag:a,tag:b") -> "tag:a,tag:b" in out; false on an empty item
 * or if it does not fit. */
bool ctl_cli_norm_tags(const char *in, char *out, size_t cap);
/* Unix seconds -> "2026-01-02T03:04:05Z", 0 -> "never". cap >= 21. */
void ctl_cli_fmt_time(char *out, size_t cap, int64_t t);
/* Host-order IPv4 -> dotted quad (cap >= 16). */
void ctl_cli_fmt_v4(char *out, size_t cap, uint32_t a);
/* IPv6 -> text, longest zero run as "::" (cap >= 40). */
void ctl_cli_fmt_v6(char *out, size_t cap, const uint8_t a[16]);
/* "online", "never seen" or "seen 5m ago". */
void ctl_cli_fmt_seen(char *out, size_t cap, const struct ctl_node *nd, int64_t now);

#endif
