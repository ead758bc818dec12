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
	sc_tomb_t *b[SC_SYNC_NB];
} sc_tombs_t;

/* in shm; max bounds the count (the entry that expires first goes) */
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

#endif
