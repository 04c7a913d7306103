/* A relay client's bounded packet queue: see queue.h. */
#include "servers/relay/queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int rly_queue_init(struct rly_queue *q, size_t max_items, size_t max_bytes)
{
	memset(q, 0, sizeof *q);
	q->ring = calloc(max_items ? max_items : 1, sizeof *q->ring);
	if (!q->ring)
		return -ENOMEM;
	q->max_items = max_items ? max_items : 1;
	q->max_bytes = max_bytes;
	return 0;
}

void rly_queue_free(struct rly_queue *q)
{
	while (q->n)
		rly_queue_pop(q);
	free(q->ring);
	q->ring = NULL;
}

const struct rly_qitem *rly_queue_peek(const struct rly_queue *q)
{
	return q->n ? &q->ring[q->head] : NULL;
}

void rly_queue_pop(struct rly_queue *q)
{
	if (!q->n)
		return;
	struct rly_qitem *it = &q->ring[q->head];
	q->bytes -= it->len;
	free(it->buf);
	it->buf = NULL;
	it->len = 0;
	q->head = (q->head + 1) % q->max_items;
	q->n--;
}

int rly_queue_push(struct rly_queue *q, const uint8_t *hdr, size_t hdr_len,
                   const uint8_t *body, size_t body_len)
{
	size_t len = hdr_len + body_len;
	if (len > q->max_bytes)
		return -EMSGSIZE;
	uint8_t *buf = malloc(len + RLY_QUEUE_ROOM);
	if (!buf)
		return -ENOMEM;
	if (hdr_len)
		memcpy(buf, hdr, hdr_len);
	if (body_len)
		memcpy(buf + hdr_len, body, body_len);
	int dropped = 0;
	while (q->n == q->max_items || q->bytes + len > q->max_bytes) {
		q->dropped++;
		q->dropped_bytes += q->ring[q->head].len;
		rly_queue_pop(q);
		dropped++;
	}
	struct rly_qitem *it = &q->ring[(q->head + q->n) % q->max_items];
	it->buf = buf;
	it->len = len;
	q->n++;
	q->bytes += len;
	return dropped;
}
