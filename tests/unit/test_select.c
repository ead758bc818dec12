/*
 * Unit tests: SWRR selection, pairs leaving and rejoining, the Record-Route
 * parameter, URI parameter parsing and rendezvous hashing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sc_topo.h"
#include "sc_health.h"
#include "sc_select.h"
#include "test_util.h"

static sc_topo_t *mk(const int *weights, const char **geos, int n)
{
	static char doc[1 << 20];
	int i, k;
	sc_error_t err;
	unsigned int uid = 1;
	sc_topo_t *t;

	k = snprintf(doc, sizeof(doc),
			"<sip-cluster name=\"s\">\n<proxy name=\"p\" server-id=\"1\" "
			"address=\"127.0.0.1\" geo-location=\"dc1\"/>\n");
	for(i = 0; i < n; i++)
		k += snprintf(doc + k, sizeof(doc) - k,
				"<ha-pair name=\"n%d\" geo-location=\"%s\" weight=\"%d\">"
				"<server name=\"s%d\" address=\"127.1.%d.%d\" "
				"role=\"primary\"/></ha-pair>\n",
				i, geos ? geos[i] : "dc1", weights[i], i, i / 200, i % 200 + 1);
	k += snprintf(doc + k, sizeof(doc) - k, "</sip-cluster>\n");
	t = sc_topo_load_mem(doc, k, "sel.xml", NULL, &err);
	ck_assert_msg(t != NULL, "%s line %d", err.reason, err.line);
	sc_topo_carry_state(t, NULL, &uid);
	for(i = 0; i < t->npairs; i++)
		sc_health_reset(&t->pairs[i], 0);
	return t;
}

static sc_sched_t *sched_new(sc_topo_t *t)
{
	sc_sched_t *s = calloc(1, sizeof(*s));
	s->seq = calloc(SC_SCHED_MAX + t->npairs + 1, sizeof(int));
	return s;
}

static void sched_free(sc_sched_t *s)
{
	free(s->seq);
	free(s);
}

static str dc1 = {"dc1", 3};

static void count_picks(sc_sched_t *s, int n, int *cnt, int npairs)
{
	int i;
	memset(cnt, 0, npairs * sizeof(int));
	for(i = 0; i < n; i++) {
		int idx = sc_sched_pick(s, NULL, NULL);
		ck_assert_int_ge(idx, 0);
		cnt[idx]++;
	}
}

START_TEST(test_equal_weights)
{
	int w[] = {1, 1}, cnt[2];
	sc_topo_t *t = mk(w, NULL, 2);
	sc_sched_t *s = sched_new(t);

	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 2);
	count_picks(s, 1000, cnt, 2);
	ck_assert_int_eq(cnt[0], 500);
	ck_assert_int_eq(cnt[1], 500);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_three_to_one_smooth)
{
	int w[] = {3, 1}, cnt[2], i, run = 0, maxrun = 0, prev = -1;
	sc_topo_t *t = mk(w, NULL, 2);
	sc_sched_t *s = sched_new(t);

	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 4);
	/* smooth: the cycle is a a b a, never a a a b */
	ck_assert_int_eq(s->seq[0], 0);
	ck_assert_int_eq(s->seq[1], 0);
	ck_assert_int_eq(s->seq[2], 1);
	ck_assert_int_eq(s->seq[3], 0);
	count_picks(s, 1000, cnt, 2);
	ck_assert_int_eq(cnt[0], 750);
	ck_assert_int_eq(cnt[1], 250);
	for(i = 0; i < 100; i++) {
		int idx = sc_sched_pick(s, NULL, NULL);
		run = (idx == prev) ? run + 1 : 1;
		prev = idx;
		if(run > maxrun)
			maxrun = run;
	}
	ck_assert_int_le(maxrun, 3);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_gcd_and_weight_zero)
{
	int w[] = {200, 100, 0}, cnt[3];
	sc_topo_t *t = mk(w, NULL, 3);
	sc_sched_t *s = sched_new(t);

	/* 200:100 reduces to a 3-step cycle; weight 0 takes no new calls */
	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 3);
	count_picks(s, 300, cnt, 3);
	ck_assert_int_eq(cnt[0], 200);
	ck_assert_int_eq(cnt[1], 100);
	ck_assert_int_eq(cnt[2], 0);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_pair_leaves_and_rejoins)
{
	int w[] = {1, 1, 2}, cnt[3], ev = 0;
	sc_topo_t *t = mk(w, NULL, 3);
	sc_sched_t *s = sched_new(t);

	sc_sched_build(s, t, &dc1, 1);
	count_picks(s, 400, cnt, 3);
	ck_assert_int_eq(cnt[2], 200);
	/* n2 goes out of service: the others share everything */
	sc_health_set_pair_admin(&t->pairs[2], SC_ADMIN_OOS, 0, 0, &ev);
	ck_assert(ev & SC_EV_DOWN);
	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 2);
	count_picks(s, 400, cnt, 3);
	ck_assert_int_eq(cnt[0], 200);
	ck_assert_int_eq(cnt[1], 200);
	ck_assert_int_eq(cnt[2], 0);
	/* and rejoins */
	sc_health_set_pair_admin(&t->pairs[2], SC_ADMIN_AUTO, 0, 0, &ev);
	sc_sched_build(s, t, &dc1, 1);
	count_picks(s, 400, cnt, 3);
	ck_assert_int_eq(cnt[2], 200);
	/* nothing usable: empty */
	sc_health_set_pair_admin(&t->pairs[0], SC_ADMIN_OOS, 0, 0, &ev);
	sc_health_set_pair_admin(&t->pairs[1], SC_ADMIN_OOS, 0, 0, &ev);
	sc_health_set_pair_admin(&t->pairs[2], SC_ADMIN_OOS, 0, 0, &ev);
	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 0);
	ck_assert_int_eq(sc_sched_pick(s, NULL, NULL), -1);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_local_and_remote)
{
	int w[] = {1, 1, 1}, cnt[3];
	const char *g[] = {"dc1", "dc2", "dc3"};
	sc_topo_t *t = mk(w, g, 3);
	sc_sched_t *s = sched_new(t);

	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 1), 1);
	count_picks(s, 10, cnt, 3);
	ck_assert_int_eq(cnt[0], 10);
	ck_assert_int_eq(sc_sched_build(s, t, &dc1, 0), 2);
	count_picks(s, 10, cnt, 3);
	ck_assert_int_eq(cnt[0], 0);
	ck_assert_int_eq(cnt[1], 5);
	ck_assert_int_eq(cnt[2], 5);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

static int skip_even(int idx, void *arg)
{
	return idx % 2 == 0;
}

START_TEST(test_pick_skips_tried)
{
	int w[] = {1, 1, 1, 1}, i;
	sc_topo_t *t = mk(w, NULL, 4);
	sc_sched_t *s = sched_new(t);

	sc_sched_build(s, t, &dc1, 1);
	for(i = 0; i < 10; i++)
		ck_assert_int_eq(sc_sched_pick(s, skip_even, NULL) % 2, 1);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_huge_weights_are_scaled)
{
	int w[] = {10000, 9999, 1}, cnt[3], len;
	sc_topo_t *t = mk(w, NULL, 3);
	sc_sched_t *s = sched_new(t);

	len = sc_sched_build(s, t, &dc1, 1);
	ck_assert_int_le(len, SC_SCHED_MAX + 3);
	count_picks(s, len, cnt, 3);
	/* every candidate keeps at least one slot, shares stay right */
	ck_assert_int_ge(cnt[2], 1);
	ck_assert_int_le(abs(cnt[0] - cnt[1]), len / 100 + 2);
	sched_free(s);
	sc_topo_free(t);
}
END_TEST

START_TEST(test_swrr_next_matches_cycle)
{
	int w[] = {5, 1, 1}, seq[7], i, len;
	long long cur[3] = {0, 0, 0};

	len = sc_swrr_cycle(w, 3, seq, 100);
	ck_assert_int_eq(len, 7);
	for(i = 0; i < 21; i++)
		ck_assert_int_eq(sc_swrr_next(w, cur, 3), seq[i % 7]);
}
END_TEST

static int ok_not(int i, void *arg)
{
	return i != *(int *)arg;
}

START_TEST(test_rendezvous_moves_only_own_keys)
{
	str names[2] = {{"n1", 2}, {"n2", 2}};
	int owner[200], i, moved = 0, held0 = 0, down = 0;
	char kb[32];
	str k;

	for(i = 0; i < 200; i++) {
		k.s = kb;
		k.len = snprintf(kb, sizeof(kb), "user%d@example.com", i);
		owner[i] = sc_rendezvous(&k, names, 2, NULL, NULL);
		ck_assert(owner[i] == 0 || owner[i] == 1);
		held0 += owner[i] == 0;
	}
	/* spread roughly evenly */
	ck_assert_int_gt(held0, 60);
	ck_assert_int_lt(held0, 140);
	/* n1 (index 0) goes down: only its keys move */
	for(i = 0; i < 200; i++) {
		int o;
		k.s = kb;
		k.len = snprintf(kb, sizeof(kb), "user%d@example.com", i);
		o = sc_rendezvous(&k, names, 2, ok_not, &down);
		if(o != owner[i]) {
			moved++;
			ck_assert_int_eq(owner[i], 0);
		}
		/* and stable: same answer twice */
		ck_assert_int_eq(o, sc_rendezvous(&k, names, 2, ok_not, &down));
	}
	ck_assert_int_eq(moved, held0);
}
END_TEST

START_TEST(test_lookup_indexes_large)
{
	int w[600], i;
	sc_topo_t *t;
	char nb[16];
	str n;

	for(i = 0; i < 600; i++)
		w[i] = 1;
	t = mk(w, NULL, 600);
	for(i = 0; i < 600; i++) {
		sc_server_t *s = t->pairs[i].srv[0];
		ck_assert_ptr_eq(sc_topo_server_by_addr(t, &s->ip, s->port, 0), s);
		ck_assert_ptr_eq(sc_topo_server_by_addr(t, &s->ip, 0, SC_TP_UDP), s);
		ck_assert_ptr_eq(sc_topo_server_by_name(t, &s->name), s);
		ck_assert_ptr_eq(sc_topo_server_by_uid(t, s->h.uid), s);
		ck_assert_ptr_eq(
				sc_topo_pair_by_name(t, &t->pairs[i].name), &t->pairs[i]);
	}
	n.s = nb;
	n.len = snprintf(nb, sizeof(nb), "n600");
	ck_assert_ptr_null(sc_topo_pair_by_name(t, &n));
	ck_assert_ptr_null(sc_topo_server_by_addr(t, &t->proxies[0].ip, 0, 0));
	ck_assert_ptr_eq(sc_topo_proxy_by_addr(t, &t->proxies[0].ip, 5060, 0),
			&t->proxies[0]);
	sc_topo_free(t);
}
END_TEST

Suite *select_suite(void)
{
	Suite *s = suite_create("select");
	TCase *tc = tcase_create("swrr");

	tcase_add_test(tc, test_equal_weights);
	tcase_add_test(tc, test_three_to_one_smooth);
	tcase_add_test(tc, test_gcd_and_weight_zero);
	tcase_add_test(tc, test_pair_leaves_and_rejoins);
	tcase_add_test(tc, test_local_and_remote);
	tcase_add_test(tc, test_pick_skips_tried);
	tcase_add_test(tc, test_huge_weights_are_scaled);
	tcase_add_test(tc, test_swrr_next_matches_cycle);
	tcase_add_test(tc, test_rendezvous_moves_only_own_keys);
	tcase_add_test(tc, test_lookup_indexes_large);
	suite_add_tcase(s, tc);
	return s;
}
