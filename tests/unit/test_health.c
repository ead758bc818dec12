/*
 * Unit tests: the HA pair state machine, driven by a fake clock and fake
 * ping outcomes (no SIP, no tm).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sc_topo.h"
#include "sc_health.h"

static const char *doc =
		"<sip-cluster name=\"t\">\n"
		"<proxy name=\"p\" server-id=\"1\" address=\"127.0.0.1\" "
		"geo-location=\"dc1\"/>\n"
		"<ha-pair name=\"pair\" geo-location=\"dc1\">\n"
		"<server name=\"a\" address=\"127.0.0.11\" role=\"primary\"/>\n"
		"<server name=\"b\" address=\"127.0.0.12\" role=\"backup\"/>\n"
		"</ha-pair>\n"
		"<ha-pair name=\"single\" geo-location=\"dc1\">\n"
		"<server name=\"s\" address=\"127.0.0.21\" role=\"primary\"/>\n"
		"</ha-pair>\n"
		"</sip-cluster>\n";

static sc_topo_t *T;
static sc_pair_t *P; /* two members */
static sc_pair_t *S; /* single server */
static sc_hcfg_t C;
static int EV;

static void setup(void)
{
	sc_error_t err;
	unsigned int uid = 1;

	T = sc_topo_load_mem(doc, strlen(doc), "h.xml", NULL, &err);
	ck_assert_msg(T != NULL, "%s", err.reason);
	sc_topo_carry_state(T, NULL, &uid);
	P = &T->pairs[0];
	S = &T->pairs[1];
	sc_health_reset(P, 0);
	sc_health_reset(S, 0);
	C.check = 1000;
	C.force = 1000;
	EV = 0;
}

static void teardown(void)
{
	sc_topo_free(T);
}

/* tick at time now: returns the member pinged, or -1 */
static int tick(sc_pair_t *p, long long now, unsigned int *seq)
{
	sc_ping_t ping;
	memset(&ping, 0, sizeof(ping));
	if(sc_health_tick(p, &C, now, now, &ping, &EV)) {
		if(seq)
			*seq = ping.seq;
		return ping.srv;
	}
	return -1;
}

static int answer(
		sc_pair_t *p, int srv, unsigned int seq, int code, long long now)
{
	return sc_health_result(
			p, &C, srv, seq, code, sc_code_alive(code, NULL), now, now, &EV);
}

START_TEST(test_primary_answers_backup_untouched)
{
	unsigned int seq;
	long long t;
	int n = 0;

	for(t = 0; t <= 10000; t += 100) {
		int srv = tick(P, t, &seq);
		if(srv >= 0) {
			ck_assert_int_eq(srv, 0);
			ck_assert_int_eq(answer(P, srv, seq, 200, t + 5), 1);
			n++;
		}
	}
	/* one ping per oos_check */
	ck_assert_int_eq(n, 11);
	ck_assert_uint_eq(P->srv[1]->h.pings, 0);
	ck_assert_uint_eq(P->srv[0]->h.pings, 11);
	ck_assert_int_eq(P->srv[0]->h.rtt, 5);
	ck_assert_int_eq(P->srv[0]->h.last_code, 200);
	ck_assert_int_eq(P->h.state, SC_PAIR_IN_SERVICE);
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert_int_eq(EV, 0);
}
END_TEST

START_TEST(test_failover_to_backup_within_bound)
{
	unsigned int seq;
	long long t, died = 1500, switched = -1;

	for(t = 0; t <= 20000 && switched < 0; t += 100) {
		int srv = tick(P, t, &seq);
		if(srv == 0 && t < died)
			answer(P, 0, seq, 200, t + 1);
		else if(srv == 1)
			answer(P, 1, seq, 200, t + 1);
		if(EV & SC_EV_ACTIVE)
			switched = t + 1;
	}
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	ck_assert_int_eq(P->h.mode, SC_MODE_CHECK);
	ck_assert(sc_pair_usable(P));
	/* the pair never went out of service: the backup answered at once */
	ck_assert_int_eq(EV & SC_EV_DOWN, 0);
	ck_assert_msg(switched - died <= C.check + 2 * C.force,
			"switched after %lld ms", switched - died);
	ck_assert_uint_eq(P->h.switchovers, 1);
	ck_assert_int_eq(P->srv[0]->h.fails, 1);
	ck_assert_int_eq(P->srv[0]->h.last_code, SC_CODE_TIMEOUT);
	/* from now on the backup is pinged at the check pace */
	EV = 0;
	{
		unsigned long before = P->srv[0]->h.pings;
		for(; t <= 30000; t += 100) {
			int srv = tick(P, t, &seq);
			if(srv >= 0) {
				ck_assert_int_eq(srv, 1);
				answer(P, 1, seq, 200, t + 1);
			}
		}
		ck_assert_uint_eq(P->srv[0]->h.pings, before);
	}
}
END_TEST

/* a member alive/dead every 1.5 s (its partner dead): one alarm per
 * interval, not one per outage; failover never picks a member whose last
 * probe failed */
START_TEST(test_flapping_alarms_debounced)
{
	unsigned int seq, held = 0;
	long long t;
	int downs = 0, alarms = 0, held_total = 0;

	for(t = 0; t <= 60000; t += 100) {
		int alive = (t / 1500) % 2 == 0;
		int srv;
		EV = 0;
		srv = tick(P, t, &seq);
		if(srv == 0 && alive)
			answer(P, 0, seq, 200, t + 1);
		if(EV & SC_EV_DOWN) {
			downs++;
			if(sc_health_alarm(P, t, 60000, &held))
				alarms++;
			else
				held_total++;
		}
	}
	ck_assert_msg(downs >= 5, "the pair went down %d times", downs);
	ck_assert_int_eq(alarms, 1);
	ck_assert_int_eq(held_total, downs - 1);
	ck_assert_uint_eq(P->h.alarm_held, (unsigned)(downs - 1));
	ck_assert_int_eq(P->h.alarm_quiet, 1);
	/* after the interval the next one is logged, with the count held */
	ck_assert_int_eq(sc_health_alarm(P, 60000 + 60000, 60000, &held), 1);
	ck_assert_uint_eq(held, (unsigned)(downs - 1));
	ck_assert_int_eq(P->h.alarm_quiet, 0);
	/* interval 0: every outage is an alarm */
	ck_assert_int_eq(sc_health_alarm(P, 120001, 0, &held), 1);
	ck_assert_int_eq(sc_health_alarm(P, 120002, 0, &held), 1);
	ck_assert_uint_eq(held, 0);
}
END_TEST

START_TEST(test_last_probe_failed_excludes_member)
{
	sc_server_t *b = P->srv[1];

	b->h.fails = 1;
	b->h.last_answer = 1000;
	b->h.last_fail = 2000;
	b->h.last_code = SC_CODE_TIMEOUT;
	/* within the window, its edge included (a member probed every
	 * 2 x oos_force in force mode stays out between two probes) */
	ck_assert_int_eq(sc_srv_recently_failed(b, 3000, 4000), 1);
	ck_assert_int_eq(sc_srv_recently_failed(b, 6000, 4000), 1);
	/* long ago: tried again (a silent backup may have become active) */
	ck_assert_int_eq(sc_srv_recently_failed(b, 6001, 4000), 0);
	/* window 0: whenever */
	ck_assert_int_eq(sc_srv_recently_failed(b, 10000000, 0), 1);
	/* answered since */
	b->h.last_code = 200;
	b->h.last_answer = 2500;
	ck_assert_int_eq(sc_srv_recently_failed(b, 3000, 4000), 0);
}
END_TEST

START_TEST(test_both_silent_then_primary_returns)
{
	unsigned int seq;
	long long t;
	int down_at = -1, pings_a = 0, pings_b = 0;

	/* nobody answers */
	for(t = 0; t <= 8000; t += 100) {
		int srv = tick(P, t, &seq);
		if(srv == 0)
			pings_a++;
		if(srv == 1)
			pings_b++;
		if((EV & SC_EV_DOWN) && down_at < 0)
			down_at = t;
	}
	/* primary missed at 1000, backup at 2000: out of service */
	ck_assert_int_eq(down_at, 2000);
	ck_assert_int_eq(P->h.state, SC_PAIR_OOS);
	ck_assert(!sc_pair_usable(P));
	/* probing went on, alternating, at the oos_force pace */
	ck_assert_int_ge(pings_a, 4);
	ck_assert_int_ge(pings_b, 4);
	ck_assert_int_le(abs(pings_a - pings_b), 1);
	ck_assert_int_eq(P->h.mode, SC_MODE_FORCE);

	/* the primary comes back */
	EV = 0;
	for(; t <= 12000 && !(EV & SC_EV_UP); t += 100) {
		int srv = tick(P, t, &seq);
		if(srv == 0)
			answer(P, 0, seq, 200, t + 2);
	}
	ck_assert(EV & SC_EV_UP);
	ck_assert_int_eq(EV & SC_EV_ACTIVE, 0); /* it was already the active one */
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert(sc_pair_usable(P));
	ck_assert_int_eq(P->h.mode, SC_MODE_CHECK);
	ck_assert_int_eq(P->srv[0]->h.fails, 0);
}
END_TEST

START_TEST(test_backup_503_not_active)
{
	unsigned int seq;
	long long t;

	for(t = 0; t <= 6000; t += 100) {
		int srv = tick(P, t, &seq);
		if(srv == 1)
			answer(P, 1, seq, 503, t + 1);
	}
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert_int_eq(P->h.state, SC_PAIR_OOS);
	ck_assert_int_eq(P->srv[1]->h.last_code, 503);
	ck_assert_int_ge(P->srv[1]->h.fails, 2);
	ck_assert_uint_eq(P->h.switchovers, 0);
	ck_assert_int_eq(EV & SC_EV_ACTIVE, 0);
}
END_TEST

START_TEST(test_alive_codes)
{
	int codes[] = {405, 501, 0};
	ck_assert(sc_code_alive(200, NULL));
	ck_assert(sc_code_alive(202, codes));
	ck_assert(!sc_code_alive(405, NULL));
	ck_assert(sc_code_alive(405, codes));
	ck_assert(sc_code_alive(501, codes));
	ck_assert(!sc_code_alive(503, codes));
	ck_assert(!sc_code_alive(408, codes));
	ck_assert(!sc_code_alive(180, codes));
}
END_TEST

START_TEST(test_negative_reply_keeps_pacing)
{
	unsigned int seq;
	int srv;

	srv = tick(P, 0, &seq);
	ck_assert_int_eq(srv, 0);
	/* the active member answers 503 at once: missed, but the partner is
	 * probed when the ping's time is up, not in a tight loop */
	ck_assert_int_eq(answer(P, 0, seq, 503, 10), 1);
	ck_assert_int_eq(P->h.mode, SC_MODE_FORCE);
	ck_assert_int_eq(tick(P, 20, NULL), -1);
	ck_assert_int_eq(tick(P, 999, NULL), -1);
	ck_assert_int_eq(tick(P, 1000, &seq), 1);
}
END_TEST

START_TEST(test_stale_reply_ignored)
{
	unsigned int seq, seq2;

	ck_assert_int_eq(tick(P, 0, &seq), 0);
	/* deadline passes: missed, backup probed */
	ck_assert_int_eq(tick(P, 1000, &seq2), 1);
	/* the primary's late 200 counts for nothing */
	ck_assert_int_eq(answer(P, 0, seq, 200, 1100), 0);
	ck_assert_int_eq(P->h.mode, SC_MODE_FORCE);
	ck_assert_int_eq(P->srv[0]->h.fails, 1);
	/* a reply naming the wrong member is ignored too */
	ck_assert_int_eq(answer(P, 0, seq2, 200, 1100), 0);
	ck_assert_int_eq(answer(P, 1, seq2, 200, 1100), 1);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
}
END_TEST

START_TEST(test_timeout_is_min_of_check_and_force)
{
	unsigned int seq;

	C.check = 5000;
	C.force = 2000;
	ck_assert_int_eq(tick(P, 0, &seq), 0);
	ck_assert_int_eq(P->h.ping_deadline, 2000);
	ck_assert_int_eq(tick(P, 1999, NULL), -1);
	/* missed at 2000, the backup is probed at once with force timeout */
	ck_assert_int_eq(tick(P, 2000, &seq), 1);
	ck_assert_int_eq(P->h.ping_deadline, 4000);
	ck_assert_int_eq(answer(P, 1, seq, 200, 2050), 1);
	/* back to check pace from the ping's send time */
	ck_assert_int_eq(tick(P, 6999, NULL), -1);
	ck_assert_int_eq(tick(P, 7000, NULL), 1);

	/* check shorter than force: the timeout is check */
	sc_health_reset(P, 0);
	C.check = 1000;
	C.force = 3000;
	ck_assert_int_eq(tick(P, 0, &seq), 0);
	ck_assert_int_eq(P->h.ping_deadline, 1000);
}
END_TEST

START_TEST(test_checking_disabled)
{
	C.check = 0;
	ck_assert_int_eq(tick(P, 0, NULL), -1);
	ck_assert_int_eq(tick(P, 100000, NULL), -1);
	ck_assert(sc_pair_usable(P));
	ck_assert_int_eq(sc_pair_active_index(P), 0);
}
END_TEST

/* a request from the backup is a claim: the backup is probed at once and
 * becomes active only when it answers */
START_TEST(test_request_from_backup_flips)
{
	unsigned int seq;

	ck_assert_int_eq(tick(P, 0, &seq), 0);
	ck_assert_int_eq(answer(P, 0, seq, 200, 5), 1);
	/* a request from the active member changes nothing */
	ck_assert_int_eq(sc_health_seen_request(P, 0, 10, 10, &EV), 0);
	ck_assert_int_eq(EV, 0);
	/* one from the backup: nothing moves yet, the backup is probed next,
	 * at once (not at the next check), with the force timeout */
	ck_assert_int_eq(sc_health_seen_request(P, 1, 20, 20, &EV), 1);
	ck_assert_int_eq(EV, 0);
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert_uint_eq(P->srv[1]->h.requests, 1);
	ck_assert_int_eq(tick(P, 20, &seq), 1);
	ck_assert_int_eq(P->h.ping_claim, 1);
	ck_assert_int_eq(P->h.ping_deadline, 20 + C.force);
	/* a second request meanwhile asks for nothing more */
	ck_assert_int_eq(sc_health_seen_request(P, 1, 25, 25, &EV), 1);
	ck_assert_int_eq(tick(P, 25, NULL), -1);
	/* its alive answer makes it active */
	ck_assert_int_eq(answer(P, 1, seq, 200, 30), 1);
	ck_assert(EV & SC_EV_ACTIVE);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	ck_assert_int_eq(P->h.mode, SC_MODE_CHECK);
	ck_assert_uint_eq(P->h.switchovers, 1);
}
END_TEST

/* a spoofed claim: the backup does not answer its probe (or answers 503):
 * the pair stays on the primary, in CHECK mode, no event */
START_TEST(test_spoofed_claim_changes_nothing)
{
	unsigned int seq;
	long long t;

	ck_assert_int_eq(tick(P, 0, &seq), 0);
	ck_assert_int_eq(answer(P, 0, seq, 200, 5), 1);
	ck_assert_int_eq(sc_health_seen_request(P, 1, 100, 100, &EV), 1);
	ck_assert_int_eq(tick(P, 100, &seq), 1);
	/* silence: the claim probe times out */
	ck_assert_int_eq(tick(P, 100 + C.force, &seq), 0);
	ck_assert_int_eq(EV, 0);
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert_int_eq(P->h.mode, SC_MODE_CHECK);
	ck_assert(sc_pair_usable(P));
	ck_assert_int_eq(P->srv[1]->h.fails, 1);
	ck_assert_int_eq(answer(P, 0, seq, 200, 1110), 1);
	/* within SC_CLAIM_MIN_MS of the last claim probe: no new probe */
	ck_assert_int_eq(sc_health_seen_request(P, 1, 1099, 1099, &EV), 0);
	/* later: probed again, answers 503: still nothing */
	ck_assert_int_eq(sc_health_seen_request(P, 1, 1200, 1200, &EV), 1);
	ck_assert_int_eq(tick(P, 1200, &seq), 1);
	ck_assert_int_eq(answer(P, 1, seq, 503, 1201), 1);
	ck_assert_int_eq(EV, 0);
	ck_assert_int_eq(P->h.mode, SC_MODE_CHECK);
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	/* a flood of claims probes the backup at most once a second */
	{
		int probes = 0;
		for(t = 1300; t < 11300; t += 10) {
			int srv;
			sc_health_seen_request(P, 1, t, t, &EV);
			srv = tick(P, t, &seq);
			if(srv == 1) {
				probes++;
				answer(P, 1, seq, 503, t);
			} else if(srv == 0) {
				answer(P, 0, seq, 200, t);
			}
		}
		ck_assert_int_le(probes, 10);
		ck_assert_int_ge(probes, 9);
	}
	ck_assert_int_eq(EV, 0);
	ck_assert_int_eq(sc_pair_active_index(P), 0);
	ck_assert(sc_pair_usable(P));
}
END_TEST

/* with checking disabled a claim is still verified */
START_TEST(test_claim_checking_disabled)
{
	unsigned int seq;

	C.check = 0;
	ck_assert_int_eq(tick(P, 0, NULL), -1);
	ck_assert_int_eq(sc_health_seen_request(P, 1, 10, 10, &EV), 1);
	ck_assert_int_eq(tick(P, 10, &seq), 1);
	ck_assert_int_eq(answer(P, 1, seq, 200, 20), 1);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	ck_assert_int_eq(tick(P, 100000, NULL), -1);
}
END_TEST

START_TEST(test_request_brings_pair_back)
{
	long long t;
	unsigned int seq;
	int srv;

	for(t = 0; t <= 3000; t += 100)
		tick(P, t, NULL);
	ck_assert_int_eq(P->h.state, SC_PAIR_OOS);
	EV = 0;
	ck_assert_int_eq(sc_health_seen_request(P, 1, t, t, &EV), 1);
	ck_assert_int_eq(EV, 0);
	ck_assert(!sc_pair_usable(P));
	/* the claimed member is probed (next, or its probe is out already);
	 * its answer brings the pair back */
	if(P->h.ping_srv == 1) {
		seq = P->h.ping_seq;
	} else {
		for(srv = -1; srv < 0; t += 100)
			srv = tick(P, t, &seq);
		ck_assert_int_eq(srv, 1);
	}
	ck_assert_int_eq(answer(P, 1, seq, 200, t), 1);
	ck_assert(EV & SC_EV_UP);
	ck_assert(EV & SC_EV_ACTIVE);
	ck_assert(sc_pair_usable(P));
}
END_TEST

START_TEST(test_single_server_pair)
{
	unsigned int seq;
	long long t;

	ck_assert_int_eq(tick(S, 0, &seq), 0);
	answer(S, 0, seq, 200, 1);
	ck_assert(sc_pair_usable(S));
	/* one miss and it is out of service: there is no partner */
	ck_assert_int_eq(tick(S, 1000, &seq), 0);
	ck_assert_int_eq(tick(S, 2000, &seq), 0);
	ck_assert(EV & SC_EV_DOWN);
	ck_assert(!sc_pair_usable(S));
	/* keeps probing the same server at the force pace */
	for(t = 2100; t < 5000; t += 100) {
		int srv = tick(S, t, &seq);
		ck_assert(srv == -1 || srv == 0);
	}
	EV = 0;
	ck_assert_int_eq(tick(S, 5000, &seq), 0);
	answer(S, 0, seq, 200, 5001);
	ck_assert(EV & SC_EV_UP);
	ck_assert(sc_pair_usable(S));
	ck_assert_int_eq(EV & SC_EV_ACTIVE, 0);
}
END_TEST

START_TEST(test_admin_pair_drain)
{
	sc_health_set_pair_admin(P, SC_ADMIN_OOS, 0, 0, &EV);
	ck_assert(EV & SC_EV_DOWN);
	ck_assert(!sc_pair_usable(P));
	/* probing goes on underneath */
	ck_assert_int_eq(tick(P, 0, NULL), 0);
	EV = 0;
	sc_health_set_pair_admin(P, SC_ADMIN_AUTO, 10, 10, &EV);
	ck_assert(EV & SC_EV_UP);
	ck_assert(sc_pair_usable(P));
}
END_TEST

START_TEST(test_admin_pair_forced_in_service)
{
	long long t;

	for(t = 0; t <= 3000; t += 100)
		tick(P, t, NULL);
	ck_assert(!sc_pair_usable(P));
	EV = 0;
	sc_health_set_pair_admin(P, SC_ADMIN_ACTIVE, t, t, &EV);
	ck_assert(EV & SC_EV_UP);
	ck_assert(sc_pair_usable(P));
}
END_TEST

START_TEST(test_admin_force_member)
{
	unsigned int seq;
	long long t;

	sc_health_set_server_admin(P, 1, SC_ADMIN_ACTIVE, 0, 0, &EV);
	ck_assert(EV & SC_EV_ACTIVE);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	/* nobody answers: the forced member stays active and usable */
	for(t = 0; t <= 5000; t += 100) {
		int srv = tick(P, t, &seq);
		ck_assert(srv == -1 || srv == 1);
	}
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	ck_assert(sc_pair_usable(P));
	ck_assert_int_ge(P->srv[1]->h.fails, 3);
	/* a request from the other member does not override the operator */
	ck_assert_int_eq(sc_health_seen_request(P, 0, t, t, &EV), 0);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	/* auto: back to probing */
	EV = 0;
	sc_health_set_server_admin(P, 1, SC_ADMIN_AUTO, t, t, &EV);
	ck_assert_int_eq(tick(P, t, &seq), 1);
}
END_TEST

START_TEST(test_admin_member_out)
{
	unsigned int seq;
	long long t;

	/* take the active primary out: the backup takes over */
	sc_health_set_server_admin(P, 0, SC_ADMIN_OOS, 0, 0, &EV);
	ck_assert(EV & SC_EV_ACTIVE);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	/* and the primary is never pinged or made active again */
	for(t = 0; t <= 6000; t += 100) {
		int srv = tick(P, t, &seq);
		ck_assert(srv == -1 || srv == 1);
	}
	ck_assert_int_eq(sc_health_seen_request(P, 0, t, t, &EV), 0);
	ck_assert_int_eq(sc_pair_active_index(P), 1);
	/* the backup is silent too: out of service */
	ck_assert(!sc_pair_usable(P));
}
END_TEST

Suite *health_suite(void)
{
	Suite *s = suite_create("health");
	TCase *tc = tcase_create("state machine");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_primary_answers_backup_untouched);
	tcase_add_test(tc, test_failover_to_backup_within_bound);
	tcase_add_test(tc, test_both_silent_then_primary_returns);
	tcase_add_test(tc, test_backup_503_not_active);
	tcase_add_test(tc, test_alive_codes);
	tcase_add_test(tc, test_negative_reply_keeps_pacing);
	tcase_add_test(tc, test_stale_reply_ignored);
	tcase_add_test(tc, test_timeout_is_min_of_check_and_force);
	tcase_add_test(tc, test_checking_disabled);
	tcase_add_test(tc, test_request_from_backup_flips);
	tcase_add_test(tc, test_spoofed_claim_changes_nothing);
	tcase_add_test(tc, test_claim_checking_disabled);
	tcase_add_test(tc, test_request_brings_pair_back);
	tcase_add_test(tc, test_single_server_pair);
	tcase_add_test(tc, test_admin_pair_drain);
	tcase_add_test(tc, test_admin_pair_forced_in_service);
	tcase_add_test(tc, test_admin_force_member);
	tcase_add_test(tc, test_admin_member_out);
	tcase_add_test(tc, test_flapping_alarms_debounced);
	tcase_add_test(tc, test_last_probe_failed_excludes_member);
	suite_add_tcase(s, tc);
	return s;
}
