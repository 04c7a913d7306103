/* `mesh-proxy nc HOST PORT`, client side: asks the running node (through
 * its local API socket) to connect to HOST:PORT, waits for the one-line
 * answer, then copies stdin to the connection and the connection to
 * stdout. Made for ssh's ProxyCommand, so it blocks and polls: it is a
 * short-lived CLI process, not part of the node's event loop. */
#include "cli/nc_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NC_BUF 65536

static int nc_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads the answer line byte by byte: nothing after it may be consumed. */
static int nc_read_line(int fd, char *line, size_t len)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (ch == '\n')
			break;
		if (n + 1 < len)
			line[n++] = ch;
	}
	line[n] = 0;
	return 0;
}

int nc_client_run(int s, const char *host, const char *port)
{
	char req[600];
	int n = snprintf(req, sizeof(req), "nc %s %s\n", host, port);
	char line[256];
	if (n < 0 || (size_t)n >= sizeof(req) || nc_write_all(s, req, (size_t)n) != 0 ||
	    nc_read_line(s, line, sizeof(line)) != 0) {
		fprintf(stderr, "mesh-proxy nc: the node closed the connection\n");
		close(s);
		return 1;
	}
	if (strcmp(line, "ok") != 0) {
		const char *why = strncmp(line, "error: ", 7) == 0 ? line + 7 : line;
		/* The node tried the mesh's names, then DNS. */
		const char *hint = strcmp(why, "name did not resolve") == 0
		                       ? " (no peer has this name and DNS does not "
		                         "know it; see mesh-proxy status)"
		                       : "";
		fprintf(stderr, "mesh-proxy nc: %s:%s: %s%s\n", host, port, why, hint);
		close(s);
		return 1;
	}

	static char buf[NC_BUF];
	bool in_open = true;
	for (;;) {
		struct pollfd p[2] = {
		    {.fd = s, .events = POLLIN},
		    {.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(s, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break; /* the far end closed: done */
			if (nc_write_all(STDOUT_FILENO, buf, (size_t)r) != 0)
				break;
		}
		if (in_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				in_open = false;
				shutdown(s, SHUT_WR);
			} else if (nc_write_all(s, buf, (size_t)r) != 0) {
				break;
			}
		}
	}
	close(s);
	return 0;
}
