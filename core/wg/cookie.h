/* MAC1/MAC2 and cookie replies (WireGuard paper, section 5.4.4 and 5.4.7).
 *
 * The checker is ours: it verifies mac1 against our public key and, under
 * load, mac2 against a cookie bound to the sender's address, and makes cookie
 * replies. The maker is per peer: it stamps mac1/mac2 on our handshake
 * messages to that peer and keeps the cookie the peer sent us. */
#ifndef MESH_WG_COOKIE_H
#define MESH_WG_COOKIE_H

#include "core/wg/messages.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct wg_cookie_checker {
	uint8_t mac1_key[WG_NOISE_SYMMETRIC_KEY_LEN]; /* HASH("mac1----" || our public) */
	uint8_t
	    cookie_key[WG_NOISE_SYMMETRIC_KEY_LEN]; /* HASH("cookie--" || our public) */
	uint8_t secret[WG_NOISE_HASH_LEN];          /* rotates every 120 s */
	uint64_t secret_birthdate_ns;
	bool has_secret;
};

struct wg_cookie_maker {
	uint8_t mac1_key[WG_NOISE_SYMMETRIC_KEY_LEN]; /* from the peer's public key */
	uint8_t cookie_key[WG_NOISE_SYMMETRIC_KEY_LEN];
	uint8_t cookie[WG_COOKIE_LEN];
	uint64_t cookie_birthdate_ns;
	bool cookie_valid;
	uint8_t last_mac1_sent[WG_COOKIE_LEN];
	bool have_sent_mac1;
};

enum wg_cookie_mac_state {
	WG_COOKIE_INVALID_MAC,
	WG_COOKIE_VALID_MAC_BUT_NO_COOKIE,
	WG_COOKIE_VALID_MAC_WITH_COOKIE,
};

void wg_cookie_checker_init(struct wg_cookie_checker *c,
                            const uint8_t our_public[WG_NOISE_PUBLIC_KEY_LEN]);
void wg_cookie_checker_wipe(struct wg_cookie_checker *c);

/* msg is a whole handshake initiation or response (len is its exact size,
 * at least 32: the MACs are its last 32 bytes). Checks mac1 always and mac2
 * only when check_cookie is set. */
enum wg_cookie_mac_state wg_cookie_validate(struct wg_cookie_checker *c,
                                            const uint8_t *msg, size_t len,
                                            const struct sockaddr *src, bool check_cookie,
                                            uint64_t now_ns);

/* Builds the cookie reply to msg (a handshake message from src whose sender
 * index is sender_index). */
void wg_cookie_reply_create(struct wg_cookie_checker *c, struct wg_msg_cookie *out,
                            const uint8_t *msg, size_t len, uint32_t sender_index,
                            const struct sockaddr *src, uint64_t now_ns);

void wg_cookie_maker_init(struct wg_cookie_maker *m,
                          const uint8_t peer_public[WG_NOISE_PUBLIC_KEY_LEN]);
void wg_cookie_maker_wipe(struct wg_cookie_maker *m);

/* Writes mac1 and (with a fresh cookie) mac2 into the last 32 bytes of msg. */
void wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len,
                        uint64_t now_ns);

/* Decrypts a cookie reply for a message we sent. Returns 0, -EINVAL when we
 * sent nothing it could answer, -EBADMSG when it does not decrypt. */
int wg_cookie_reply_consume(struct wg_cookie_maker *m, const struct wg_msg_cookie *msg,
                            uint64_t now_ns);

#endif
