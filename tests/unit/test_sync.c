/*
 * Unit tests: registration repair (sc_sync.c) - the order of copies, the
 * merge decisions, tombstones, digests, bucket lists, the start-up gate.
 */
#include <stdio.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sc_sync.h"
#include "test_util.h"

#define S(x) ((str){(char *)(x), (int)sizeof(x) - 1})

static sc_bver_t ver(long long lm, int cseq, long long exp, const char *cid)
{
	sc_bver_t v;
	v.lm = lm;
	v.cseq = cseq;
	v.expires = exp;
	v.callid.s = (char *)cid;
	v.callid.len = (int)strlen(cid);
	return v;
}

static sc_tver_t tver(long long at, int cseq, const char *cid)
{
	sc_tver_t t;
	t.at = at;
	t.cseq = cseq;
	t.callid.s = (char *)cid;
	t.callid.len = (int)strlen(cid);
	return t;
}

START_TEST(t_order)
{
	sc_bver_t a = ver(100, 5, 3700, "c1"), b = ver(100, 6, 3700, "c1");

	/* same second, same Call-ID: CSeq */
	ck_assert_int_lt(sc_bver_cmp(&a, &b), 0);
	ck_assert_int_gt(sc_bver_cmp(&b, &a), 0);
	ck_assert_int_eq(sc_bver_cmp(&a, &a), 0);
	/* a later second wins over a higher CSeq */
	b = ver(99, 50, 3700, "c1");
	ck_assert_int_gt(sc_bver_cmp(&a, &b), 0);
	/* same second, other Call-ID: the later expiry, then the bytes */
	b = ver(100, 1, 3800, "c2");
	ck_assert_int_lt(sc_bver_cmp(&a, &b), 0);
	b = ver(100, 1, 3700, "c0");
	ck_assert_int_gt(sc_bver_cmp(&a, &b), 0);
	ck_assert_int_lt(sc_bver_cmp(&b, &a), 0);
	/* permanent beats any expiry */
	b = ver(100, 5, 0, "c1");
	ck_assert_int_gt(sc_bver_cmp(&b, &a), 0);
}
END_TEST

START_TEST(t_decide)
{
	sc_bver_t local = ver(100, 5, 3700, "c1");
	sc_bver_t older = ver(90, 4, 3690, "c1");
	sc_bver_t newer = ver(110, 6, 3710, "c1");
	sc_bver_t expired = ver(110, 6, 150, "c1");
	sc_tver_t t;

	ck_assert_int_eq(sc_sync_decide(&local, NULL, &newer, 200), SC_SYNC_UPDATE);
	ck_assert_int_eq(sc_sync_decide(&local, NULL, &older, 200), SC_SYNC_SKIP);
	ck_assert_int_eq(sc_sync_decide(&local, NULL, &local, 200), SC_SYNC_SKIP);
	ck_assert_int_eq(sc_sync_decide(NULL, NULL, &newer, 200), SC_SYNC_INSERT);
	/* never an expired copy */
	ck_assert_int_eq(sc_sync_decide(NULL, NULL, &expired, 200), SC_SYNC_SKIP);
	/* an unregister at 105 beats the stale copy of 90 (no resurrection) */
	t = tver(105, 7, "c1");
	ck_assert_int_eq(sc_sync_decide(NULL, &t, &older, 200), SC_SYNC_SKIP);
	/* a registration after the unregister wins */
	ck_assert_int_eq(sc_sync_decide(NULL, &t, &newer, 200), SC_SYNC_INSERT);
	/* same second: the re-registration with a higher CSeq wins, the
	 * unregister wins against its own or a lower CSeq */
	t = tver(110, 5, "c1");
	ck_assert_int_eq(sc_sync_decide(NULL, &t, &newer, 200), SC_SYNC_INSERT);
	t = tver(110, 6, "c1");
	ck_assert_int_eq(sc_sync_decide(NULL, &t, &newer, 200), SC_SYNC_SKIP);
	/* same second, another Call-ID (a phone that rebooted): the binding */
	t = tver(110, 99, "other");
	ck_assert_int_eq(sc_sync_decide(NULL, &t, &newer, 200), SC_SYNC_INSERT);

	/* incoming tombstones */
	t = tver(105, 6, "c1");
	ck_assert_int_eq(sc_sync_decide_tomb(&local, &t), SC_SYNC_DELETE);
	ck_assert_int_eq(sc_sync_decide_tomb(&newer, &t), SC_SYNC_SKIP);
	ck_assert_int_eq(sc_sync_decide_tomb(NULL, &t), SC_SYNC_INSERT);
}
END_TEST

/* a merge is commutative and idempotent: every order of the same inputs
 * ends with the same copy */
START_TEST(t_merge_converges)
{
	sc_bver_t v[4] = {ver(100, 5, 3700, "a"), ver(100, 6, 3700, "a"),
			ver(101, 1, 3701, "b"), ver(99, 9, 9999, "a")};
	int perm[24][4], np = 0, a, b, c, d, i;
	const sc_bver_t *cur;

	for(a = 0; a < 4; a++)
		for(b = 0; b < 4; b++)
			for(c = 0; c < 4; c++)
				for(d = 0; d < 4; d++)
					if(a != b && a != c && a != d && b != c && b != d
							&& c != d) {
						perm[np][0] = a;
						perm[np][1] = b;
						perm[np][2] = c;
						perm[np][3] = d;
						np++;
					}
	for(i = 0; i < np; i++) {
		cur = NULL;
		for(a = 0; a < 4; a++) {
			const sc_bver_t *in = &v[perm[i][a]];
			int r = sc_sync_decide(cur, NULL, in, 200);
			if(r == SC_SYNC_INSERT || r == SC_SYNC_UPDATE)
				cur = in;
			/* applying it again changes nothing */
			ck_assert_int_eq(sc_sync_decide(cur, NULL, in, 200), SC_SYNC_SKIP);
		}
		ck_assert_ptr_eq(cur, &v[2]);
	}
}
END_TEST

START_TEST(t_tombs)
{
	sc_tombs_t *t = sc_tombs_new(3);
	sc_tver_t v1 = tver(100, 3, "cid"), v2 = tver(120, 4, "cid-longer");
	sc_tomb_t *e;
	str aor = S("alice@x"), c1 = S("sip:a@127.1.2.3"), c2 = S("sip:a@127.5.6.7");

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_null(sc_tombs_get(t, 7, &aor, &c1));
	ck_assert_int_eq(sc_tombs_put(t, 7, &aor, &c1, &v1, 3700), 0);
	e = sc_tombs_get(t, 7, &aor, &c1);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->v.at, 100);
	ck_assert(STR_IS(e->v.callid, "cid"));
	ck_assert_ptr_null(sc_tombs_get(t, 7, &aor, &c2));
	/* the later delete wins, the later until too */
	ck_assert_int_eq(sc_tombs_put(t, 7, &aor, &c1, &v2, 3600), 0);
	e = sc_tombs_get(t, 7, &aor, &c1);
	ck_assert_int_eq(e->v.at, 120);
	ck_assert(STR_IS(e->v.callid, "cid-longer"));
	ck_assert_int_eq(e->until, 3700);
	ck_assert_int_eq(sc_tombs_put(t, 7, &aor, &c1, &v1, 3600), 0);
	ck_assert_int_eq(sc_tombs_get(t, 7, &aor, &c1)->v.at, 120);
	ck_assert_int_eq(t->n, 1);
	/* bounded: the oldest goes, in O(1) (it was a scan for the one kept
	 * shortest, under a lock registrations take) */
	ck_assert_int_eq(sc_tombs_put(t, 7, &aor, &c2, &v1, 500), 0);
	ck_assert_int_eq(sc_tombs_put(t, 1031, &aor, &c2, &v1, 900), 0);
	ck_assert_int_eq(t->n, 3);
	ck_assert_int_eq(t->evicted, 0);
	ck_assert_int_eq(sc_tombs_put(t, 8, &aor, &c1, &v1, 4000), 0);
	ck_assert_int_eq(t->n, 3);
	ck_assert_int_eq(t->evicted, 1);
	ck_assert_ptr_null(sc_tombs_get(t, 7, &aor, &c1));
	ck_assert_ptr_nonnull(sc_tombs_get(t, 7, &aor, &c2));
	ck_assert_ptr_nonnull(sc_tombs_get(t, 1031, &aor, &c2));
	ck_assert_ptr_eq(t->oldest, sc_tombs_get(t, 7, &aor, &c2));
	ck_assert_ptr_eq(t->newest, sc_tombs_get(t, 8, &aor, &c1));
	/* a stored binding clears its tombstone */
	ck_assert_int_eq(sc_tombs_del(t, 8, &aor, &c1), 1);
	ck_assert_int_eq(sc_tombs_del(t, 8, &aor, &c1), 0);
	ck_assert_int_eq(t->n, 2);
	ck_assert_ptr_eq(t->newest, sc_tombs_get(t, 1031, &aor, &c2));
	/* garbage collection at the deleted copy's expiry */
	ck_assert_int_eq(sc_tombs_gc(t, 600), 1);
	ck_assert_ptr_eq(t->oldest, t->newest);
	ck_assert_int_eq(sc_tombs_gc(t, 3700), 1);
	ck_assert_int_eq(t->n, 0);
	ck_assert_ptr_null(t->oldest);
	ck_assert_ptr_null(t->newest);
	/* a flood of 10,000 puts into a table of 3: always the 3 newest, the
	 * age list consistent */
	{
		int i;
		char buf[32];
		str c;
		for(i = 0; i < 10000; i++) {
			c.s = buf;
			c.len = snprintf(buf, sizeof(buf), "sip:x%d@127.0.0.1", i);
			ck_assert_int_eq(sc_tombs_put(t, i, &aor, &c, &v1, 5000), 0);
		}
		ck_assert_int_eq(t->n, 3);
		for(i = 9997; i < 10000; i++) {
			c.s = buf;
			c.len = snprintf(buf, sizeof(buf), "sip:x%d@127.0.0.1", i);
			ck_assert_ptr_nonnull(sc_tombs_get(t, i, &aor, &c));
		}
		ck_assert_ptr_null(t->oldest->age_prev);
		ck_assert_ptr_eq(t->oldest->age_next->age_next, t->newest);
	}
	sc_tombs_free(t);
}
END_TEST

/* what a peer may claim: versions up to the clock plus the skew, a
 * tombstone kept no longer than the longest binding could live */
START_TEST(t_bounds)
{
	ck_assert_int_eq(sc_sync_time_ok(1000, 1000, 60), 1);
	ck_assert_int_eq(sc_sync_time_ok(1060, 1000, 60), 1);
	ck_assert_int_eq(sc_sync_time_ok(1061, 1000, 60), 0);
	ck_assert_int_eq(sc_sync_time_ok(1000000000, 1000, 60), 0);
	ck_assert_int_eq(sc_sync_time_ok(1001, 1000, -5), 0);
	ck_assert_int_eq(sc_sync_until_bound(2000, 1000, 60, 3600), 2000);
	ck_assert_int_eq(sc_sync_until_bound(1000000000, 1000, 60, 3600), 4660);
	/* max_expires 0 (unbounded): a day */
	ck_assert_int_eq(sc_sync_until_bound(1000000000, 1000, 60, 0), 87460);
}
END_TEST

/* what reaches srjson, and how a body is read */
START_TEST(t_json)
{
	srjson_doc_t d;
	sc_sync_env_t e;
	sc_sync_rec_t r;
	sc_sync_tin_t tn;
	char buf[512];
	const char *ok = "{\"op\":\"rec\",\"from\":\"p2\",\"id\":7,\"r\":[{\"aor\":"
					 "\"a\\u00e9\",\"c\":\"sip:a@h\",\"last_modified\":5,\"expires\""
					 ":1e300,\"q\":\"x\",\"cseq\":3}],\"x\":[{\"a\":\"b\",\"c\":"
					 "\"sip:b@h\",\"at\":9,\"un\":99}]}";

	ck_assert_int_eq(sc_json_precheck(ok, strlen(ok), SC_JSON_MAX_DEPTH), 1);
	ck_assert_int_eq(sc_json_precheck("[[[]]]", 6, 3), 1);
	ck_assert_int_eq(sc_json_precheck("[[[[]]]]", 8, 3), 0);
	/* brackets inside strings do not count */
	ck_assert_int_eq(sc_json_precheck("[\"[[[[\"]", 8, 1), 1);
	/* a \u that ends early, a bad escape, a NUL: refused */
	ck_assert_int_eq(sc_json_precheck("{\"a\":\"\\u12\"}", 12, 8), 0);
	ck_assert_int_eq(sc_json_precheck("{\"a\":\"\\u\"", 9, 8), 0);
	ck_assert_int_eq(sc_json_precheck("{\"a\":\"\\q\"}", 10, 8), 0);
	ck_assert_int_eq(sc_json_precheck("{\"a\":\"x\0\"}", 9, 8), 0);

	strcpy(buf, ok);
	srjson_InitDoc(&d, NULL);
	d.root = srjson_Parse(&d, buf);
	ck_assert_int_eq(sc_sync_env_parse(&d, &e), 0);
	ck_assert(STR_IS(e.op, "rec"));
	ck_assert(STR_IS(e.from, "p2"));
	ck_assert_int_eq(e.id, 7);
	ck_assert_ptr_nonnull(e.r);
	ck_assert_int_eq(sc_sync_rec_parse(&d, e.r->child, &r), 0);
	ck_assert_int_eq(r.v.lm, 5);
	ck_assert_int_eq(r.v.cseq, 3);
	/* out of range and wrong types read as absent */
	ck_assert_int_eq(r.v.expires, 0);
	ck_assert(r.q == -1);
	ck_assert_int_eq(sc_sync_tomb_parse(&d, e.x->child, &tn), 0);
	ck_assert_int_eq(tn.v.at, 9);
	ck_assert_int_eq(tn.until, 99);
	/* a string where an object belongs, an unknown op, no sender */
	ck_assert_int_eq(sc_sync_rec_parse(&d, e.x, &r), -1);
	srjson_DestroyDoc(&d);
	strcpy(buf, "{\"op\":\"wipe\",\"from\":\"p2\"}");
	srjson_InitDoc(&d, NULL);
	d.root = srjson_Parse(&d, buf);
	ck_assert_int_eq(sc_sync_env_parse(&d, &e), -1);
	srjson_DestroyDoc(&d);
	strcpy(buf, "{\"op\":\"rec\",\"from\":3}");
	srjson_InitDoc(&d, NULL);
	d.root = srjson_Parse(&d, buf);
	ck_assert_int_eq(sc_sync_env_parse(&d, &e), -1);
	srjson_DestroyDoc(&d);
}
END_TEST

START_TEST(t_digest)
{
	static sc_digest_t a, b;
	unsigned char bm[SC_SYNC_BITMAP];
	static char hex[SC_DIGEST_HEX_LEN];
	static uint64_t back[SC_SYNC_NB];
	str aor = S("bob@x"), c = S("sip:bob@127.0.0.1");
	sc_bver_t v = ver(100, 1, 3700, "k"), v2 = ver(100, 2, 3700, "k");
	sc_bver_t recent = ver(200, 1, 3800, "k"), soon = ver(100, 1, 160, "k");

	sc_digest_init(&a, 150, 20);
	sc_digest_init(&b, 150, 20);
	ck_assert_int_eq(sc_digest_add(&a, 5, &aor, &c, &v), 1);
	ck_assert_int_eq(sc_digest_add(&b, 5, &aor, &c, &v), 1);
	/* modified after the cut, or expiring within the margin: left out */
	ck_assert_int_eq(sc_digest_add(&a, 6, &aor, &c, &recent), 0);
	ck_assert_int_eq(sc_digest_add(&a, 7, &aor, &c, &soon), 0);
	ck_assert_int_eq(sc_digest_diff(a.d, b.d, bm), 0);
	/* another version of the same binding: its bucket differs */
	sc_digest_init(&b, 150, 20);
	sc_digest_add(&b, 5 + SC_SYNC_NB, &aor, &c, &v2);
	ck_assert_int_eq(sc_digest_diff(a.d, b.d, bm), 1);
	ck_assert_int_eq(SC_BIT_GET(bm, 5), 1);
	/* order of additions does not matter */
	sc_digest_init(&a, 150, 20);
	sc_digest_init(&b, 150, 20);
	sc_digest_add(&a, 5, &aor, &c, &v);
	sc_digest_add(&a, 5, &aor, &aor, &v2);
	sc_digest_add(&b, 5, &aor, &aor, &v2);
	sc_digest_add(&b, 5, &aor, &c, &v);
	ck_assert_int_eq(sc_digest_diff(a.d, b.d, bm), 0);
	/* hex round trip */
	sc_digest_hex(a.d, hex);
	ck_assert_int_eq(sc_digest_unhex(hex, SC_DIGEST_HEX_LEN, back), 0);
	ck_assert_int_eq(memcmp(back, a.d, sizeof(back)), 0);
	ck_assert_int_eq(sc_digest_unhex(hex, SC_DIGEST_HEX_LEN - 1, back), -1);
	hex[3] = 'G';
	ck_assert_int_eq(sc_digest_unhex(hex, SC_DIGEST_HEX_LEN, back), -1);
}
END_TEST

START_TEST(t_bitmap)
{
	unsigned char bm[SC_SYNC_BITMAP];
	char out[64];

	ck_assert_int_eq(sc_bitmap_parse("3,17,1023", 9, bm), 3);
	ck_assert_int_eq(SC_BIT_GET(bm, 17), 1);
	ck_assert_int_eq(SC_BIT_GET(bm, 18), 0);
	ck_assert_int_eq(sc_bitmap_format(bm, out, sizeof(out)), 9);
	ck_assert_str_eq(out, "3,17,1023");
	ck_assert_int_eq(sc_bitmap_parse("", 0, bm), 0);
	ck_assert_int_eq(sc_bitmap_parse("1024", 4, bm), -1);
	ck_assert_int_eq(sc_bitmap_parse("1,,2", 4, bm), -1);
	ck_assert_int_eq(sc_bitmap_parse("1,", 2, bm), -1);
	ck_assert_int_eq(sc_bitmap_parse("x", 1, bm), -1);
	ck_assert_int_eq(sc_bitmap_parse("99999999999", 11, bm), -1);
	/* too small a buffer */
	sc_bitmap_parse("3,17,1023", 9, bm);
	ck_assert_int_eq(sc_bitmap_format(bm, out, 5), -1);
}
END_TEST

START_TEST(t_gate)
{
	int st[3] = {SC_PEER_DONE, SC_PEER_DOWN, SC_PEER_PENDING};

	ck_assert_int_eq(sc_sync_ready(100, 100, 5, NULL, 0), 1);
	ck_assert_int_eq(sc_sync_ready(101, 100, 5, st, 3), 0);
	ck_assert_int_eq(sc_sync_ready(105, 100, 5, st, 3), 1);
	st[2] = SC_PEER_DONE;
	ck_assert_int_eq(sc_sync_ready(101, 100, 5, st, 3), 1);
}
END_TEST

/* no digest while the peer's push is still being applied, nor within a
 * retry interval of the last one at start-up; periodic rounds only wait for
 * the push */
START_TEST(t_may_ask)
{
	/* never asked, nothing received */
	ck_assert_int_eq(sc_sync_may_ask(5000, 0, 0, 1000, 0), 1);
	/* asked 400 ms ago: not yet; 1 s ago: again */
	ck_assert_int_eq(sc_sync_may_ask(5000, 4600, 0, 1000, 0), 0);
	ck_assert_int_eq(sc_sync_may_ask(5000, 4000, 0, 1000, 0), 1);
	/* its records still arriving (last applied 200 ms ago): not even when
	 * the retry interval has passed, nor in a periodic round */
	ck_assert_int_eq(sc_sync_may_ask(5000, 1000, 4800, 1000, 0), 0);
	ck_assert_int_eq(sc_sync_may_ask(5000, 1000, 4800, 1000, 1), 0);
	/* the push ended a second ago: ask */
	ck_assert_int_eq(sc_sync_may_ask(5000, 1000, 4000, 1000, 0), 1);
	ck_assert_int_eq(sc_sync_may_ask(5000, 1000, 3999, 1000, 1), 1);
	/* a periodic round does not wait for the retry interval */
	ck_assert_int_eq(sc_sync_may_ask(5000, 4900, 0, 1000, 1), 1);
	/* the clock stepped back: no stall */
	ck_assert_int_eq(sc_sync_may_ask(5000, 9000, 9000, 1000, 0), 1);
}
END_TEST

Suite *sync_suite(void)
{
	Suite *s = suite_create("sync");
	TCase *tc = tcase_create("sync");

	tcase_add_test(tc, t_order);
	tcase_add_test(tc, t_decide);
	tcase_add_test(tc, t_merge_converges);
	tcase_add_test(tc, t_tombs);
	tcase_add_test(tc, t_digest);
	tcase_add_test(tc, t_bitmap);
	tcase_add_test(tc, t_gate);
	tcase_add_test(tc, t_bounds);
	tcase_add_test(tc, t_json);
	tcase_add_test(tc, t_may_ask);
	suite_add_tcase(s, tc);
	return s;
}
