/*
 * sipcluster - registration repair between proxies, the parts that need no
 * SIP: the order of two copies of a binding, the merge decision, the
 * tombstones of deleted bindings, the per-bucket digests and the start-up
 * gate. The glue (sc_syncd.c) walks usrloc, talks DMQ and applies what
 * these functions decide.
 *
 * Why this is correct for concurrent updates (the "last writer wins"
 * register per binding, keyed by AoR and contact URI):
 *   - every copy of a binding carries its version: last_modified (wall
 *     clock second of the REGISTER that set it, replicated unchanged), then
 *     CSeq when the Call-ID is the same (one registration flow, RFC 3261
 *     10.2.4: CSeq grows), then the expiry, then the Call-ID bytes: a total
 *     order, the same on every proxy;
 *   - a merge keeps the greater version, so merging is commutative,
 *     associative and idempotent: whatever order repairs run in, every
 *     proxy ends with the greatest version any of them had;
 *   - an explicit delete (unregister, "*", a binding the SIP Server's 200
 *     no longer lists, a replicated delete) leaves a tombstone with the
 *     wall clock second of the delete and the Call-ID and CSeq of the
 *     unregistering REGISTER; it beats every copy last modified earlier,
 *     and one of the same second and Call-ID with a CSeq not above its
 *     own, so a stale copy on the other side of a partition is not
 *     resurrected while a later re-registration (even in the same second)
 *     wins. It is kept until the deleted binding would have expired: after
 *     that no copy of it can be alive anywhere. A binding stored on a
 *     proxy clears its tombstone there, so no proxy holds both;
 *   - an expiry needs no tombstone: the expiry time is part of the binding
 *     and identical everywhere, every proxy drops it at that time and a
 *     repair never sends or accepts an expired copy.
 * The order needs the proxies' clocks in step (NTP): two conflicting
 * updates less than the clock difference apart may be ordered wrongly.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_SYNC_H_
#define _SC_SYNC_H_

#include <stdint.h>
#include "../../core/str.h"
#include "../../core/utils/srjson.h"

/* digest buckets, by aorhash & (SC_SYNC_NB - 1): a power of two */
#define SC_SYNC_NB 1024
#define SC_SYNC_BITMAP (SC_SYNC_NB / 8)

/* what orders two copies of one binding */
typedef struct sc_bver
{
	long long lm; /* last_modified, wall clock s */
	int cseq;
	long long expires; /* absolute, s; 0 = permanent */
	str callid;
} sc_bver_t;

/* <0: a is older than b, 0: the same version, >0: a is newer */
int sc_bver_cmp(const sc_bver_t *a, const sc_bver_t *b);

/* what a tombstone knows of the delete */
typedef struct sc_tver
{
	long long at; /* wall clock s */
	int cseq;
	str callid;
} sc_tver_t;

/* 1 when the delete t beats the copy v */
int sc_tomb_beats(const sc_tver_t *t, const sc_bver_t *v);

/* merge decisions */
#define SC_SYNC_SKIP 0
#define SC_SYNC_INSERT 1
#define SC_SYNC_UPDATE 2
#define SC_SYNC_DELETE 3

/* an incoming copy `in` against the local copy and the local tombstone
 * (NULL: none), at wall clock `now` */
int sc_sync_decide(const sc_bver_t *local, const sc_tver_t *tomb,
		const sc_bver_t *in, long long now);
/* an incoming tombstone against the local copy (NULL: none): DELETE the
 * local copy, INSERT (record) the tombstone, or SKIP it */
int sc_sync_decide_tomb(const sc_bver_t *local, const sc_tver_t *in);

/* ---- tombstones ---- */
typedef struct sc_tomb
{
	struct sc_tomb *next;
	struct sc_tomb *age_prev; /* insertion order: the oldest goes first */
	struct sc_tomb *age_next;
	unsigned int aorhash;
	sc_tver_t v;
	long long until; /* kept until then (the deleted copy's expiry) */
	str aor;
	str contact;
	char data[];
} sc_tomb_t;

typedef struct sc_tombs
{
	int n;
	int max;
	unsigned long evicted; /* pushed out by a full table */
	sc_tomb_t *oldest;	   /* insertion order (age_prev/age_next) */
	sc_tomb_t *newest;
	sc_tomb_t *b[SC_SYNC_NB];
} sc_tombs_t;

/* in shm; max bounds the count: a full table drops its oldest entry, in
 * O(1) (it scanned every entry for the one to expire first, under a lock
 * registrations take). Only local deletes and authenticated peers put
 * tombstones (the cluster channel is TCP/TLS from the proxies' addresses),
 * each one lives at most as long as the longest binding could
 * (sc_sync_until_bound), so a full table means max_tombstones is too small
 * for the unregister rate: `evicted` counts it. */
sc_tombs_t *sc_tombs_new(int max);
void sc_tombs_free(sc_tombs_t *t);
/* record a delete: the later delete and the later `until` win; 0 ok, -1
 * no memory */
int sc_tombs_put(sc_tombs_t *t, unsigned int aorhash, const str *aor,
		const str *contact, const sc_tver_t *v, long long until);
/* the tombstone of (aor, contact), NULL when none (valid until the next
 * change of the table) */
sc_tomb_t *sc_tombs_get(sc_tombs_t *t, unsigned int aorhash, const str *aor,
		const str *contact);
/* forget the tombstone of (aor, contact): the binding is stored again */
int sc_tombs_del(sc_tombs_t *t, unsigned int aorhash, const str *aor,
		const str *contact);
/* drop the entries kept until before now; returns how many */
int sc_tombs_gc(sc_tombs_t *t, long long now);

/* ---- what a peer may claim ----
 * Versions come from the peers' clocks. A received last_modified or
 * tombstone time beyond now + skew is refused (a far-future version would
 * beat every later copy for ever); a tombstone is kept at most max_life s
 * (the longest binding a REGISTER can get: max_expires, or a day when that
 * is unbounded) past now + skew. */
/* 1 when a received version time may be taken */
int sc_sync_time_ok(long long t, long long now, int skew);
/* the tombstone's keep-until, bounded */
long long sc_sync_until_bound(
		long long until, long long now, int skew, int max_life);

/* ---- the sync messages (KDMQ bodies of the DMQ peer "sipcluster") ----
 * {"op":"digest"|"pull"|"rec"|"done", "from":<proxy>, "id":N, ...}; "rec"
 * carries bindings in "r" (dmq_usrloc's field names) and tombstones in
 * "x". Everything a body says is read through these functions before
 * anything is applied: wrong types read as absent, numbers are finite and
 * within +-2^62 or absent, and a body reaches srjson's parser only when
 * sc_json_precheck() passes it. Who may send a body is the channel's
 * business (sipcluster_from_peer()), not theirs. */
#define SC_JSON_MAX_DEPTH 8

/* 1 when the len bytes at s may be handed to srjson: no NUL byte, { and [
 * (outside strings) nested no deeper than max (its parser recurses once per
 * level), every escape in a string one JSON allows and every \u followed
 * by 4 hex digits (its string parser reads 4 characters after \u whatever
 * they are: past the end of a body that ends early, found by fuzz_sync) */
int sc_json_precheck(const char *s, int len, int max);

/* a string member (0, out set) or -1 (absent or not a string: out "") */
int sc_jget_str(srjson_doc_t *d, srjson_t *o, const char *k, str *out);
/* a number member; 0 when absent, not a number or out of +-2^62 */
long long sc_jget_num(srjson_doc_t *d, srjson_t *o, const char *k);

typedef struct sc_sync_env
{
	str op;	  /* digest, pull, rec, done */
	str from; /* the sending proxy's name, 1..SC_NAME_MAX */
	unsigned int id;
	srjson_t *r; /* "rec": the bindings (an array), NULL none */
	srjson_t *x; /* "rec": the tombstones (an array), NULL none */
} sc_sync_env_t;

/* the envelope of a parsed body; 0 ok, -1 malformed */
int sc_sync_env_parse(srjson_doc_t *d, sc_sync_env_t *e);

/* one binding as a peer sent it (strings point into the doc) */
typedef struct sc_sync_rec
{
	str aor, c, ruid, received, path, ua, instance;
	sc_bver_t v; /* last_modified, cseq, expires, callid */
	double q;
	unsigned int flags, cflags, methods, reg_id;
	int server_id;
} sc_sync_rec_t;

/* 0 ok, -1 malformed (no AoR or contact, or a field out of range) */
int sc_sync_rec_parse(srjson_doc_t *d, srjson_t *o, sc_sync_rec_t *r);

/* one tombstone as a peer sent it */
typedef struct sc_sync_tin
{
	str aor, c;
	sc_tver_t v;
	long long until;
} sc_sync_tin_t;

int sc_sync_tomb_parse(srjson_doc_t *d, srjson_t *o, sc_sync_tin_t *t);

/* ---- digests ---- */

/* A bucket's digest is the sum of the fingerprints of the bindings it
 * holds that were last modified at or before the cut and expire more than
 * margin seconds after it (or never): both sides of a comparison use the
 * same cut, so replication in flight and expiries due soon do not look
 * like differences. */
typedef struct sc_digest
{
	long long cut;
	int margin;
	int count; /* bindings included */
	uint64_t d[SC_SYNC_NB];
} sc_digest_t;

void sc_digest_init(sc_digest_t *dg, long long cut, int margin);
/* adds the binding when the rule includes it; 1 included, 0 not */
int sc_digest_add(sc_digest_t *dg, unsigned int aorhash, const str *aor,
		const str *contact, const sc_bver_t *v);
/* the buckets where a and b differ, as a bitmap; returns their count */
int sc_digest_diff(const uint64_t *a, const uint64_t *b,
		unsigned char bitmap[SC_SYNC_BITMAP]);
/* 16 lower-case hex digits per bucket: 2 * 8 * SC_SYNC_NB characters */
#define SC_DIGEST_HEX_LEN (16 * SC_SYNC_NB)
void sc_digest_hex(const uint64_t *d, char *out);
int sc_digest_unhex(const char *s, int len, uint64_t *d);

/* bitmap helpers; a bucket list is written as "3,17,1023" */
#define SC_BIT_SET(bm, i) ((bm)[(i) >> 3] |= (unsigned char)(1u << ((i)&7)))
#define SC_BIT_GET(bm, i) (((bm)[(i) >> 3] >> ((i)&7)) & 1)
int sc_bitmap_count(const unsigned char bitmap[SC_SYNC_BITMAP]);
int sc_bitmap_format(
		const unsigned char bitmap[SC_SYNC_BITMAP], char *out, int len);
int sc_bitmap_parse(
		const char *s, int len, unsigned char bitmap[SC_SYNC_BITMAP]);

/* ---- the start-up gate ---- */
#define SC_PEER_PENDING 0 /* asked, no complete answer yet */
#define SC_PEER_DONE 1	  /* its bindings merged here */
#define SC_PEER_DOWN 2	  /* did not answer (timeout, transport error) */

/* REGISTERs are refused until every peer is done or down; pending peers
 * count as down once `wait` s passed since `start`; 1 ready, 0 not yet */
int sc_sync_ready(long long now, long long start, int wait,
		const int *peer_state, int npeers);

/* whether to send a peer a digest now (ms clock): not within `retry` ms of
 * the last one we sent it (sent_ms), and not while records it pushed to us
 * are still being applied (the last applied within `retry` ms, rec_ms): a
 * digest taken halfway through its push differs again and would ask it to
 * send everything a second time (a slow replica of 100,000 bindings was
 * sent them twice and took 32 s instead of 7); `periodic` rounds keep
 * their own pace and only wait for the push. 1 send, 0 not yet */
int sc_sync_may_ask(long long now_ms, long long sent_ms, long long rec_ms,
		int retry, int periodic);

#endif
