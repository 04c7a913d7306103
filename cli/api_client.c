/* The client side of the node's local API: one request line, then the
 * answer copied out as it arrives. */
#include "cli/api_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "node/api_server.h" /* API_MAX_LINE */

int api_client_connect(const char *path, char *err, size_t errlen)
{
	return api_client_connect_bounded(path, 0, err, errlen);
}

/* The timeouts are set before connect(): on Linux SO_SNDTIMEO bounds a
 * Unix socket's connect, which otherwise blocks for ever once a stopped
 * node's listen backlog is full. */
int api_client_connect_bounded(const char *path, unsigned seconds, char *err,
                               size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "API socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "socket: %s", strerror(e));
		return -e;
	}
	if (seconds && api_client_timeout(fd, seconds) != 0) {
		int e = errno;
		snprintf(err, errlen, "setsockopt: %s", strerror(e));
		close(fd);
		return -e;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
			snprintf(err, errlen,
			         "%s: the node did not accept the connection in %u s "
			         "(stopped or stuck; restart it)",
			         path, seconds);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	errno = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
	    crlen != sizeof(cr)) {
		int e = errno ? errno : EPROTO;
		snprintf(err, errlen, "%s: cannot tell who serves it (SO_PEERCRED: %s)",
		         path, strerror(e));
		close(fd);
		return -EPERM;
	}
	if (cr.uid != getuid()) {
		snprintf(err, errlen,
		         "%s is served by uid %u, not by this user (uid %u): refusing "
		         "to use it (only a node of your own user is trusted; run the "
		         "command as the user that runs the node, or remove the socket "
		         "if it is not a node of yours)",
		         path, (unsigned)cr.uid, (unsigned)getuid());
		close(fd);
		return -EPERM;
	}
	return fd;
}

int api_client_timeout(int fd, unsigned seconds)
{
	struct timeval tv = {.tv_sec = seconds};
	return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
	               setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0
	           ? 0
	           : -errno;
}

int api_client_request(int fd, const char *line, int out_fd, char *last_line,
                       size_t last_len, char *err, size_t errlen)
{
	char req[API_MAX_LINE + 2];
	int n = snprintf(req, sizeof(req), "%s\n", line);
	if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
		snprintf(err, errlen, "cannot send the request to the node");
		close(fd);
		return -EIO;
	}
	char buf[4096];
	char tail[512] = "";
	size_t tl = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			snprintf(err, errlen,
			         "the node did not answer in time (is it stuck? its log "
			         "may say)");
			close(fd);
			return -ETIMEDOUT;
		}
		if (r <= 0)
			break;
		if (out_fd >= 0) {
			ssize_t off = 0;
			while (off < r) {
				ssize_t w = write(out_fd, buf + off, (size_t)(r - off));
				if (w <= 0)
					break;
				off += w;
			}
		}
		/* Remember the last complete line. */
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] == '\n') {
				tail[tl] = 0;
				if (last_line && tl > 0)
					snprintf(last_line, last_len, "%s", tail);
				tl = 0;
			} else if (tl + 1 < sizeof(tail)) {
				tail[tl++] = buf[i];
			}
		}
	}
	close(fd);
	return 0;
}
