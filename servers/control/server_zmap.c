/* Compressed maps for nodes with CTL_CAP_ZSTD. A join storm is N full maps
 * of N peers each (33 GiB of JSON at 10,000 nodes); sealing, copying and
 * reading those bytes was the storm's cost. Compressed (level 1, ~4x), and
 * each chunk compressed once for every node: chunk k holds the visible
 * nodes of one id range, the receiver too (it drops itself), and stays
 * cached until a node in its range changes. In a storm ids are handed out
 * in order, so the ranges of nodes that registered settle and are sent
 * from the cache to every later joiner.
 * A chunk body is shared by every node: it assumes every node sees the
 * same peers (visibility is approval and expiry only, srv_node_visible
 * has no recipient). So it serves maps without an access policy only:
 * under a policy each node's map is built and compressed for it alone
 * (server_full.c stream_chunk, srv_stream_pump), never from this cache. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/control/zmsg.h"
#include "core/util/log.h"
#include "servers/control/server_int.h"

static size_t range_of(int64_t id)
{
	return id > 0 ? (size_t)(id - 1) / SRV_ZCHUNK_IDS : 0;
}

/* A node of chunk k's range changed: its body is stale, and freed now. A
 * range whose nodes all went is never built again (the stream skips to
 * the next node's range), so keeping the body until a rebuild would keep
 * it for good (control review 3 L1). */
void srv_zc_touch(struct ctl_server *s, int64_t id)
{
	size_t k = range_of(id);
	if (k < s->n_zc) {
		s->zc[k].gen_changed++;
		free(s->zc[k].body);
		s->zc[k].body = NULL;
		s->zc[k].len = 0;
	}
}

size_t srv_zc_bytes(const struct ctl_server *s)
{
	size_t b = 0;
	for (size_t k = 0; k < s->n_zc; k++)
		b += s->zc[k].len;
	return b;
}

void srv_zc_free(struct ctl_server *s)
{
	for (size_t k = 0; k < s->n_zc; k++)
		free(s->zc[k].body);
	free(s->zc);
	s->zc = NULL;
	s->n_zc = 0;
	ctl_zenc_free(s->zenc);
	s->zenc = NULL;
}

int srv_zwrap(struct ctl_server *s, int level, uint8_t type, const uint8_t *body,
              size_t len, uint8_t **z, size_t *zlen)
{
	if (!s->zenc && !(s->zenc = ctl_zenc_new()))
		return -ENOMEM;
	return ctl_zmsg_wrap(s->zenc, level, type, body, len, z, zlen);
}

int srv_send_zbody(struct srv_conn *c, const uint8_t *z, size_t len, size_t raw_len)
{
	int r = srv_send_body(c, CTL_MSG_ZMAP, z, len);
	if (r == 0) {
		c->s->st.zmaps_sent++;
		c->s->st.zbytes_raw += raw_len;
		c->s->st.zbytes_sent += len;
	}
	return r;
}

int srv_send_map_body(struct srv_conn *c, uint8_t type, const uint8_t *body, size_t len)
{
	uint8_t *z = NULL;
	size_t zlen = 0;
	if (!(c->caps & CTL_CAP_ZSTD) || len < CTL_ZMSG_MIN_LEN ||
	    srv_zwrap(c->s, CTL_ZMSG_LEVEL_FAST, type, body, len, &z, &zlen) < 0)
		return srv_send_body(c, type, body, len);
	int r = srv_send_zbody(c, z, zlen, len);
	free(z);
	return r;
}

/* Room for chunk k in the cache (new entries: nothing built). */
static int zc_reserve(struct ctl_server *s, size_t k)
{
	if (k < s->n_zc)
		return 0;
	size_t n = s->n_zc ? s->n_zc : 16;
	while (n <= k)
		n *= 2;
	struct srv_zchunk *nz = realloc(s->zc, n * sizeof *nz);
	if (!nz)
		return -ENOMEM;
	memset(nz + s->n_zc, 0, (n - s->n_zc) * sizeof *nz);
	s->zc = nz;
	s->n_zc = n;
	return 0;
}

/* Whether the snapshot holds a node with an id past chunk k's range. */
static bool more_after(const struct ctl_server *s, size_t k)
{
	return s->n_nodes &&
	       s->nodes[s->n_nodes - 1].id > (int64_t)((k + 1) * SRV_ZCHUNK_IDS);
}

/* Builds chunk k from the snapshot now: a MAP_PEERS of the visible nodes
 * in its range, compressed. */
static int zc_build(struct ctl_server *s, size_t k, struct srv_zchunk *zc)
{
	int64_t lo = (int64_t)(k * SRV_ZCHUNK_IDS) + 1, hi = lo + SRV_ZCHUNK_IDS - 1;
	int64_t now = (int64_t)time(NULL);
	bool found;
	size_t i = srv_snap_index(s, lo, &found);
	struct ctl_msg_text *t = malloc(SRV_ZCHUNK_IDS * sizeof *t);
	if (!t)
		return -ENOMEM;
	size_t nt = 0;
	for (; i < s->n_nodes && s->nodes[i].id <= hi; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (n->pj && srv_node_visible(n, now))
			t[nt++] = (struct ctl_msg_text){n->pj, n->pj_len};
	}
	struct ctl_msg m = {.type = CTL_MSG_MAP_PEERS};
	m.u.chunk.more = more_after(s, k);
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	int r = ctl_msg_encode_map_texts(&m, t, nt, &body, &len, &me);
	free(t);
	if (r < 0) {
		log_warn("mesh-control: MAP_PEERS encode: %s", me.text);
		return r;
	}
	uint8_t *z = NULL;
	size_t zlen = 0;
	r = srv_zwrap(s, CTL_ZMSG_LEVEL_SHARED, CTL_MSG_MAP_PEERS, body, len, &z, &zlen);
	free(body);
	if (r < 0)
		return r;
	free(zc->body);
	zc->body = z;
	zc->len = zlen;
	zc->raw_len = len;
	zc->n_peers = nt;
	zc->more = m.u.chunk.more;
	zc->gen_built = zc->gen_changed;
	s->st.zchunks_built++;
	return 0;
}

/* Chunk k as the snapshot has it now: from the cache if nothing in its
 * range changed since it was built (and whether more follow still holds),
 * else built again. */
static int zc_get(struct ctl_server *s, size_t k, const struct srv_zchunk **out)
{
	int r = zc_reserve(s, k);
	if (r < 0)
		return r;
	struct srv_zchunk *zc = &s->zc[k];
	if (zc->body && zc->gen_built == zc->gen_changed &&
	    zc->more == more_after(s, k)) {
		s->st.zchunks_reused++;
	} else if ((r = zc_build(s, k, zc)) < 0) {
		return r;
	}
	*out = zc;
	return 0;
}

/* The MAP_FULL header alone: version, self, DNS, relays, more; its peers
 * are all in the chunks. */
static int send_header(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	struct ctl_msg m;
	int r = srv_full_header(c, &m);
	if (r < 0)
		return r;
	m.u.map.more = true;
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	r = ctl_msg_encode_map_texts(&m, NULL, 0, &body, &len, &me);
	srv_policy_full_done(&m.u.map);
	if (r < 0) {
		log_warn("mesh-control: MAP_FULL encode: %s", me.text);
		return r;
	}
	c->sent_version = s->snap_version;
	c->stream_first = false;
	c->stream_cursor = 0;
	r = srv_send_map_body(c, CTL_MSG_MAP_FULL, body, len);
	free(body);
	if (r == 0) {
		c->stream_bytes += len;
	}
	return r;
}

static void stream_done(struct srv_conn *c)
{
	c->streaming = false;
	c->fresh_full = true;
	c->s->st.last_full_ms = c->stream_ms;
	c->s->st.last_full_bytes = c->stream_bytes;
}

int srv_stream_chunk_z(struct srv_conn *c, bool first)
{
	struct ctl_server *s = c->s;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (first) {
		int r = send_header(c);
		c->stream_ms += srv_ms_since(&t0);
		return r;
	}
	bool found;
	size_t i = srv_snap_index(s, c->stream_cursor + 1, &found);
	if (i == s->n_nodes) {
		/* nothing after the cursor (nodes went): the last, empty chunk */
		struct ctl_msg m = {.type = CTL_MSG_MAP_PEERS};
		int r = srv_send_msg(c, &m);
		if (r == 0)
			stream_done(c);
		return r;
	}
	size_t k = range_of(s->nodes[i].id);
	const struct srv_zchunk *zc;
	int r = zc_get(s, k, &zc);
	if (r < 0)
		return r;
	c->stream_cursor = (int64_t)((k + 1) * SRV_ZCHUNK_IDS);
	c->stream_ms += srv_ms_since(&t0);
	if (zc->n_peers == 0 && zc->more)
		return 0; /* nobody visible here: on to the next range */
	r = srv_send_zbody(c, zc->body, zc->len, zc->raw_len);
	if (r == 0) {
		c->stream_bytes += zc->raw_len;
		if (!zc->more)
			stream_done(c);
	}
	return r;
}
