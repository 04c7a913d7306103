/* Paths: where a peer's datagrams go (its UDP endpoint or the relay) and
 * where they came from. The owner's path layer decides; see device.h. */
#include "core/wg/device_internal.h"
#include "core/wg/messages.h"
#include "core/wg/peer.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util/sockaddr.h"

#define NS_PER_MS  1000000ULL
#define NS_PER_SEC 1000000000ULL

void wg_device_set_path_hooks(struct wg_device *d, const struct wg_path_hooks *h)
{
	if (h)
		d->path = *h;
	else
		memset(&d->path, 0, sizeof(d->path));
}

bool wg_peer_via_relay(const struct wg_peer *p, uint64_t now_ns)
{
	if (!p->relay_ok || !p->dev->path.relay_tx)
		return false;
	return !(p->endpoint.ss_family && now_ns < p->direct_trust_until_ns);
}

bool wg_peer_reachable(const struct wg_peer *p)
{
	return p->endpoint.ss_family || (p->relay_ok && p->dev->path.relay_tx);
}

static void note_untrusted(struct wg_peer *p, uint64_t now)
{
	struct wg_device *d = p->dev;
	if (!d->path.untrusted)
		return;
	if (p->untrusted_note_ns && now - p->untrusted_note_ns < NS_PER_SEC)
		return;
	p->untrusted_note_ns = now;
	d->path.untrusted(d->path.ctx, p->pubkey_entry.key);
}

/* To the endpoint through the owner's socket for it (a birthday socket:
 * only it has the NAT mapping the peer's filter lets in). Not batched:
 * one peer's datagrams, in order. */
static int send_side(struct wg_peer *p, const uint8_t *buf, size_t len)
{
	socklen_t sl = p->endpoint.ss_family == AF_INET ? sizeof(struct sockaddr_in)
	                                                : sizeof(struct sockaddr_in6);
	if (sendto(p->side_fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&p->endpoint,
	           sl) < 0) {
		p->dev->stats.tx_drop_sock++;
		return -errno;
	}
	p->tx_bytes += len;
	return 0;
}

static int send_direct(struct wg_peer *p, const uint8_t *buf, size_t len)
{
	int ret;
	if (!p->endpoint.ss_family) {
		p->dev->stats.tx_drop_sock++;
		return -EDESTADDRREQ;
	}
	if (p->has_side && sockaddr_equal(&p->endpoint, &p->side_to))
		return send_side(p, buf, len);
	if (p->src.family && p->dev->n_src_gone && wg_socket_src_gone(p->dev, &p->src))
		memset(&p->src, 0, sizeof(p->src)); /* that address went away */
	ret = wg_socket_send(p->dev, (const struct sockaddr *)&p->endpoint, &p->src, buf,
	                     len);
	if (ret == 0)
		p->tx_bytes += len;
	return ret;
}

int wg_peer_transmit(struct wg_peer *p, const uint8_t *buf, size_t len)
{
	struct wg_device *d = p->dev;
	uint64_t now = wg_now_ns();

	if (!wg_peer_via_relay(p, now)) {
		if (d->path.untrusted && now >= p->direct_trust_until_ns)
			note_untrusted(p, now);
		return send_direct(p, buf, len);
	}
	note_untrusted(p, now);
	uint32_t type = wg_msg_type(buf, len);
	if ((type == WG_MSG_HANDSHAKE_INITIATION || type == WG_MSG_HANDSHAKE_RESPONSE) &&
	    p->endpoint.ss_family)
		(void)send_direct(p, buf, len); /* may find a direct path */
	int ret = d->path.relay_tx(d->path.ctx, p->pubkey_entry.key, buf, len);
	if (ret != 0) {
		d->stats.tx_drop_relay++;
		return ret;
	}
	p->tx_bytes += len;
	p->relay_tx_bytes += len;
	return 0;
}

void wg_peer_note_rx(struct wg_peer *p, size_t len)
{
	uint64_t now = wg_now_ns();
	if (p->dev->rx_relay_key) {
		p->last_relay_rx_ns = now;
		p->relay_rx_bytes += len;
	} else {
		p->last_direct_rx_ns = now;
	}
}

int wg_device_set_peer_path(struct wg_device *d, const uint8_t key[WG_KEY_LEN],
                            bool relay_ok, uint32_t direct_trust_ms)
{
	struct wg_peer *p = d ? wg_pubkey_table_lookup(d->pubkeys, key) : NULL;
	if (!p)
		return -ENOENT;
	bool could = wg_peer_reachable(p), had_relay = p->relay_ok;
	p->relay_ok = relay_ok;
	p->direct_trust_until_ns =
	    direct_trust_ms ? wg_now_ns() + (uint64_t)direct_trust_ms * NS_PER_MS : 0;
	/* Packets waited for somewhere to go, or for a handshake that the
	 * endpoint never answered: a handshake now, through the relay that
	 * just came, not when the retransmit timer next fires. */
	if (p->staged_count && (d->fd4 >= 0 || d->fd6 >= 0) &&
	    ((!could && wg_peer_reachable(p) && p->handshake_unsent) ||
	     (!had_relay && relay_ok && !p->current))) {
		p->last_sent_handshake_ns = 0;
		wg_send_staged(p);
	}
	return 0;
}

void wg_device_receive_relayed(struct wg_device *d, const uint8_t src_key[WG_KEY_LEN],
                               const uint8_t *buf, size_t len)
{
	/* Rate limiting and cookies key on the source address: a relayed
	 * datagram gets one made from its sender's key (never sent to; a
	 * cookie reply goes back through the relay). The relay authenticated
	 * that key, so each sender gets its own budget. */
	struct sockaddr_in6 pseudo;
	memset(&pseudo, 0, sizeof(pseudo));
	pseudo.sin6_family = AF_INET6;
	memcpy(&pseudo.sin6_addr, src_key, 16);
	pseudo.sin6_port = (uint16_t)(src_key[16] << 8 | src_key[17]);
	d->stats.rx_relayed++;
	wg_device_tx_hold(d);
	d->rx_relay_key = src_key;
	memset(&d->rx_src, 0, sizeof(d->rx_src));
	wg_device_receive(d, buf, len, (const struct sockaddr *)&pseudo);
	d->rx_relay_key = NULL;
	wg_device_tx_release(d);
}

int wg_device_send_raw(struct wg_device *d, const struct sockaddr *to, const uint8_t *buf,
                       size_t len)
{
	if (!d || !to || (to->sa_family != AF_INET && to->sa_family != AF_INET6))
		return -EINVAL;
	return wg_socket_send(d, to, NULL, buf, len);
}

int wg_device_set_peer_sock(struct wg_device *d, const uint8_t key[WG_KEY_LEN], int fd,
                            const struct sockaddr_storage *to)
{
	struct wg_peer *p = d ? wg_pubkey_table_lookup(d->pubkeys, key) : NULL;
	if (!p)
		return -ENOENT;
	if (fd < 0 || !to || (to->ss_family != AF_INET && to->ss_family != AF_INET6)) {
		p->has_side = false;
		p->side_fd = -1;
		memset(&p->side_to, 0, sizeof(p->side_to));
		return 0;
	}
	p->has_side = true;
	p->side_fd = fd;
	p->side_to = *to;
	return 0;
}

void wg_device_receive_side(struct wg_device *d, const uint8_t *buf, size_t len,
                            const struct sockaddr *src)
{
	wg_device_tx_hold(d);
	memset(&d->rx_src, 0, sizeof(d->rx_src)); /* replies leave by the side socket */
	wg_device_receive(d, buf, len, src);
	wg_device_tx_release(d);
}
