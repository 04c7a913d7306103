/* A relay client's outgoing packet queue: bounded in packets and bytes;
 * when a new frame does not fit, the oldest frames are dropped (counted) to
 * make room, so a client that reads slowly loses old packets rather than
 * the server's memory or other clients' latency. Pure: no I/O. */
#ifndef MESH_RELAY_QUEUE_H
#define MESH_RELAY_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* Every queued buffer has this many spare bytes after its frame: room for
 * the tag when the frame is sealed on its way out (session.h). */
#define RLY_QUEUE_ROOM 16

struct rly_qitem {
	uint8_t *buf; /* one whole frame, malloc'd (len + RLY_QUEUE_ROOM) */
	size_t len;
};

struct rly_queue {
	struct rly_qitem *ring; /* max_items slots */
	size_t head, n;
	size_t bytes;
	size_t max_items, max_bytes;
	uint64_t dropped, dropped_bytes; /* oldest frames dropped to make room */
};

/* 0 or -ENOMEM. max_items >= 1; max_bytes >= the largest frame. */
int rly_queue_init(struct rly_queue *q, size_t max_items, size_t max_bytes);
/* Frees every queued frame and the ring. Safe on a zeroed queue. */
void rly_queue_free(struct rly_queue *q);

/* Copies len bytes of frame (hdr then body: the two parts are joined) to
 * the tail, dropping the oldest frames as needed. Returns the number of
 * frames dropped (>= 0), or -ENOMEM (nothing queued), or -EMSGSIZE when
 * the frame alone exceeds max_bytes. */
int rly_queue_push(struct rly_queue *q, const uint8_t *hdr, size_t hdr_len,
                   const uint8_t *body, size_t body_len);

/* The oldest frame, or NULL when empty; rly_queue_pop frees it. */
const struct rly_qitem *rly_queue_peek(const struct rly_queue *q);
void rly_queue_pop(struct rly_queue *q);

#endif
