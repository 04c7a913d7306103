/* Disco: the nodes' own small protocol beside WireGuard, to validate a path
 * to a peer (does this UDP address reach it, both ways, and how fast?) and
 * to ask a peer to punch toward us. Pure: no I/O, no allocation; the path
 * layer (core/magicsock) sends and receives, this only seals and opens.
 *
 * A disco datagram travels on the WireGuard UDP socket, or as the payload
 * of a relay packet (core/relay/frame.h):
 *
 *   +-----------+----------------------+------------+---------------------+
 *   | magic (6) | sender disco key (32)| nonce (24) | crypto_box(plain)   |
 *   +-----------+----------------------+------------+---------------------+
 *
 * The box (XSalsa20-Poly1305, 16-byte tag first) is sealed from the
 * sender's disco key to the receiver's under a random nonce. The receiver
 * reads the sender key, finds the peer that owns it and opens the box with
 * the key it shares with that peer (disco_shared, computed once per peer).
 * The sender key field is not under the tag by itself: it chooses the
 * shared key, and a datagram whose key field was changed names a key whose
 * shared key does not open it (and another spelling of the same X25519 key,
 * which would, is refused: see disco_shared). So always open with the
 * shared key of the key disco_sender_key() names, never with a guess.
 *
 * Magic "MDSC" F0 9F. A WireGuard message starts with a type 1..4 and three
 * zero bytes; a STUN message has its top two bits zero and the cookie
 * 0x2112A442 in bytes 4..7. 'M' (0x4D) is neither 1..4 nor has its top two
 * bits zero, and F0 9F is not 21 12, so no WireGuard or STUN datagram ever
 * starts with the magic (checked at compile time in disco.c). F0 9F begins a
 * 4-byte UTF-8 sequence, so no ASCII text line starts with it either.
 *
 * Plaintext (integers big-endian):
 *
 *   type u8 || version u8 (DISCO_VERSION) || body
 *
 *   PING           0x01  txid (12) || sender node key (32): the node key lets
 *                        the receiver find the peer even when the datagram
 *                        came from an address it does not know
 *   PONG           0x02  txid (12, the PING's) || the address the PING came
 *                        from: addr
 *   CALL_ME_MAYBE  0x03  n u8 (0..DISCO_CALLMEMAYBE_MAX) || n times addr:
 *                        the sender's endpoints; ping them all now;
 *                        optionally followed by nat u8 || addr: the
 *                        sender's NAT kind (DISCO_NAT_*) as its netcheck
 *                        measured it, and its public address (STUN's)
 *   BIRTHDAY       0x04  addr || socks u16 || probes u16: the sender (a
 *                        hard NAT) opened socks sockets that each sent to
 *                        our public address; probe its public IP (addr's
 *                        port is not used) at random ports, up to probes
 *                        PINGs (birthday-paradox probing, docs/disco.md)
 *
 *   addr = family u8 (4 or 6) || port u16 || address (4 or 16 bytes)
 *
 * After a body's fields, extra bytes are ignored (room for later
 * additions, which keep version 1; the version changes only for a body an
 * old receiver would misread). An unknown type or version opens as
 * -EPROTO (the caller counts and drops it); a body too short for its
 * fields, a family other than 4 or 6, n over the maximum, or a
 * CALL_ME_MAYBE trailer cut short (a nat byte without its addr) is -EINVAL.
 * Addresses are not judged here: the caller decides which it will ping.
 *
 * Replays and reflection. The codec cannot stop replays alone. A replayed
 * PING only costs a PONG, which the caller rate-limits per peer; a PONG is
 * accepted only for a txid the caller sent to that peer and has not yet seen
 * answered, so a replayed or invented PONG changes nothing. crypto_box keys
 * are symmetric (A and B share one key), so a datagram A sealed to B, sent
 * back to A with its key field rewritten to B's, opens for A as if B sent
 * it. The rules above catch that too: a reflected PING carries A's own node
 * key (the caller checks that a PING's node key is the node key of the peer
 * whose disco key opened it), a reflected PONG carries a txid A never sent;
 * a reflected CALL_ME_MAYBE lists A's own endpoints, and the pings it
 * causes reach A itself (sender key A: not a peer, dropped). */
#ifndef MESH_DISCO_H
#define MESH_DISCO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The magic, byte by byte (disco.c checks each against WireGuard and STUN
 * at compile time). */
#define DISCO_MAGIC_0 0x4D /* 'M' */
#define DISCO_MAGIC_1 0x44 /* 'D' */
#define DISCO_MAGIC_2 0x53 /* 'S' */
#define DISCO_MAGIC_3 0x43 /* 'C' */
#define DISCO_MAGIC_4 0xF0
#define DISCO_MAGIC_5 0x9F

#define DISCO_MAGIC_LEN       6
#define DISCO_KEY_LEN         32 /* X25519 public key */
#define DISCO_NONCE_LEN       24 /* crypto_box_NONCEBYTES */
#define DISCO_MAC_LEN         16 /* crypto_box_MACBYTES */
#define DISCO_SHARED_LEN      32 /* crypto_box_BEFORENMBYTES */
#define DISCO_TXID_LEN        12
#define DISCO_NODE_KEY_LEN    32
#define DISCO_VERSION         1
#define DISCO_CALLMEMAYBE_MAX 32
/* NAT kinds in a CALL_ME_MAYBE's trailer. A trailer whose first byte is
 * neither EASY nor HARD (a later addition) is ignored: DISCO_NAT_UNKNOWN. */
#define DISCO_NAT_UNKNOWN 0 /* not measured (no trailer) */
#define DISCO_NAT_EASY    1 /* mapping independent of the destination */
#define DISCO_NAT_HARD    2 /* mapping varies by destination (symmetric) */
#define DISCO_HDR_LEN         (DISCO_MAGIC_LEN + DISCO_KEY_LEN + DISCO_NONCE_LEN)
/* The shortest datagram disco_is_message takes: a header and an empty box. */
#define DISCO_MIN_LEN (DISCO_HDR_LEN + DISCO_MAC_LEN)
/* An encoded addr: family, port, address. */
#define DISCO_ADDR_MAX_LEN (1 + 2 + 16)
/* Plaintext sizes today (type and version included). */
#define DISCO_PING_PLAIN_LEN (2 + DISCO_TXID_LEN + DISCO_NODE_KEY_LEN)
#define DISCO_PLAIN_MAX                                                                  \
	(2 + 1 + DISCO_CALLMEMAYBE_MAX * DISCO_ADDR_MAX_LEN + 1 + DISCO_ADDR_MAX_LEN)
/* The largest datagram disco_seal writes: a CALL_ME_MAYBE with 32 IPv6
 * endpoints and an IPv6 public address (709 bytes). */
#define DISCO_MAX_LEN (DISCO_MIN_LEN + DISCO_PLAIN_MAX)
/* The largest datagram disco_open tries (a longer one is refused as not
 * opening): an IPv6 minimum-MTU UDP payload (1280 - 40 - 8), so later
 * versions have room and no disco datagram needs fragments. */
#define DISCO_OPEN_MAX 1232

enum disco_type {
	DISCO_PING = 0x01,
	DISCO_PONG = 0x02,
	DISCO_CALL_ME_MAYBE = 0x03,
	DISCO_BIRTHDAY = 0x04,
};

struct disco_addr {
	uint8_t family;   /* 4 or 6 */
	uint16_t port;    /* host order */
	uint8_t addr[16]; /* family 4: the first 4 bytes, the rest zero */
};

struct disco_msg {
	uint8_t type, version;
	uint8_t txid[DISCO_TXID_LEN];         /* PING, PONG */
	uint8_t node_key[DISCO_NODE_KEY_LEN]; /* PING */
	struct disco_addr src;                /* PONG */
	uint8_t n_eps;                        /* CALL_ME_MAYBE */
	struct disco_addr eps[DISCO_CALLMEMAYBE_MAX];
	/* CALL_ME_MAYBE: nat (DISCO_NAT_UNKNOWN: no trailer written or read)
	 * and, when nat is known, pub. BIRTHDAY: pub (nat unused). */
	uint8_t nat;
	struct disco_addr pub;
	uint16_t socks, probes; /* BIRTHDAY */
};

/* Cheap test for demultiplexing the UDP socket: len >= DISCO_MIN_LEN and the
 * magic matches. Looks at nothing else. */
bool disco_is_message(const uint8_t *p, size_t len);

/* The sender's disco public key (DISCO_KEY_LEN bytes, pointing into p) of a
 * datagram that passed disco_is_message: the caller looks up the peer and
 * its shared key with it before opening. */
const uint8_t *disco_sender_key(const uint8_t *p);

/* The shared key between their disco public key and our private one
 * (crypto_box_beforenm), computed once per peer so that sealing and opening
 * cost no X25519. The same value on both sides. 0, or -EINVAL when their key
 * is of low order or not in its one canonical spelling (bit 255 set, or a
 * value from 2^255 - 19 up: X25519 never makes such a key); shared is then
 * zeroed. The caller wipes shared with sodium_memzero when the peer goes. */
int disco_shared(uint8_t *shared, const uint8_t *their_pub, const uint8_t *our_priv);

/* Seals m from us (our_pub goes into the header) to the peer we share
 * shared with, under a random nonce; writes version DISCO_VERSION whatever
 * m->version says. Returns the datagram's length, or 0 when out_cap is too
 * small or m is invalid (unknown type, a family other than 4 or 6, n_eps
 * over DISCO_CALLMEMAYBE_MAX, nat over DISCO_NAT_HARD). A CALL_ME_MAYBE
 * gets its trailer only when m->nat is not DISCO_NAT_UNKNOWN. The
 * plaintext is wiped. */
size_t disco_seal(uint8_t *out, size_t out_cap, const uint8_t *our_pub,
                  const uint8_t *shared, const struct disco_msg *m);

/* Seals arbitrary plaintext bytes (type and version included) under the
 * given nonce (NULL: a random one): for tests and fuzzers, which need
 * bodies disco_seal refuses to write. Returns the length or 0 when out_cap is
 * too small or plain_len is over DISCO_OPEN_MAX - DISCO_MIN_LEN. */
size_t disco_seal_plain(uint8_t *out, size_t out_cap, const uint8_t *our_pub,
                        const uint8_t *shared, const uint8_t *nonce, const uint8_t *plain,
                        size_t plain_len);

/* Opens p[0..len) with the key shared with the sender disco_sender_key(p)
 * names. *m is zeroed, then:
 *   0        opened; *m holds the message
 *   -EBADMSG does not open: wrong key, altered, not a disco datagram, a
 *            sender key not in canonical spelling (see disco_shared), or
 *            longer than DISCO_OPEN_MAX
 *   -EPROTO  opens, but its type or version is unknown: m->type and
 *            m->version are set
 *   -EINVAL  opens, but malformed: a plaintext too short to hold type and
 *            version, or a bad body (m->type and m->version set, the rest
 *            zero)
 * Never reads past len; the plaintext is wiped. */
int disco_open(const uint8_t *p, size_t len, const uint8_t *shared, struct disco_msg *m);

/* "PING", "PONG", "CALL_ME_MAYBE", "BIRTHDAY", or NULL for an unknown type (as
 * relay_frame_type_name). */
const char *disco_type_name(unsigned type);

/* sockaddr_in / sockaddr_in6 -> disco_addr. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 senders) becomes
 * family 4, so one address has one form. The IPv6 scope id is not kept.
 * false for any other family. */
bool disco_addr_from_sockaddr(struct disco_addr *a, const struct sockaddr *sa);
/* disco_addr -> sockaddr_in / sockaddr_in6 in *ss (zeroed first). Returns
 * its length, or 0 when a's family is not 4 or 6. */
socklen_t disco_addr_to_sockaddr(const struct disco_addr *a, struct sockaddr_storage *ss);
/* Same family (4 or 6), port and address. */
bool disco_addr_equal(const struct disco_addr *a, const struct disco_addr *b);

#endif
