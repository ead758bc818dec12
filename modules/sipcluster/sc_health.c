/*
 * sipcluster - HA pair state machine (Genesys oos-check / oos-force)
 *
 * Model of one pair:
 *  - CHECK mode: the active member is pinged every `check` ms. A ping counts
 *    as missed when it is not answered alive within min(check, force) ms, or
 *    at once when it gets a non-alive reply (503, 408, transport error).
 *  - The first miss switches to FORCE mode: pings alternate between the
 *    members, one every `force` ms, each with a `force` ms timeout. The first
 *    member to answer alive becomes the active member; back to CHECK.
 *  - When every eligible member missed in the current FORCE episode the pair
 *    is out of service; probing goes on in FORCE mode.
 *  - A request received from a member (a claim: it says it is active) makes
 *    it the next member probed, at once; only its alive answer makes it
 *    the active member (a request's source address can be spoofed). A
 *    failed claim probe in CHECK mode changes nothing but the member's
 *    statistics.
 *  - Operator overrides: pair admin ACTIVE/OOS, server admin ACTIVE/OOS.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>

#include "sc_topo.h"
#include "sc_health.h"

static int sc_other(const sc_pair_t *p, int i)
{
	return p->nservers == 2 ? 1 - i : i;
}

static int sc_eligible(const sc_pair_t *p, int i)
{
	return SC_RD(p->srv[i]->h.admin) != SC_ADMIN_OOS;
}

/* index of a member forced active by the operator, or -1 */
static int sc_forced(const sc_pair_t *p)
{
	int i;
	for(i = 0; i < p->nservers; i++)
		if(SC_RD(p->srv[i]->h.admin) == SC_ADMIN_ACTIVE)
			return i;
	return -1;
}

static int sc_ping_timeout(const sc_pair_t *p, const sc_hcfg_t *c)
{
	if(p->h.mode == SC_MODE_CHECK && c->check > 0)
		return c->check < c->force ? c->check : c->force;
	return c->force;
}

void sc_health_reset(sc_pair_t *p, long long now)
{
	sc_pair_health_t *h = &p->h;

	h->active = 0;
	h->state = SC_PAIR_IN_SERVICE;
	h->mode = SC_MODE_CHECK;
	h->next_ping = now;
	h->ping_srv = -1;
	h->probe_next = 0;
	h->missed = 0;
	h->claim = -1;
	h->ping_claim = 0;
	h->claim_at = 0;
}

static void sc_set_active(sc_pair_t *p, int i, long long wall, int *events)
{
	sc_pair_health_t *h = &p->h;

	if(h->active != i) {
		h->active = i;
		h->switchovers++;
		h->since = wall;
		*events |= SC_EV_ACTIVE;
	}
	if(h->state == SC_PAIR_OOS) {
		h->state = SC_PAIR_IN_SERVICE;
		h->since = wall;
		*events |= SC_EV_UP;
	}
	h->mode = SC_MODE_CHECK;
	h->missed = 0;
}

static void sc_set_oos(sc_pair_t *p, long long wall, int *events)
{
	if(p->h.state != SC_PAIR_OOS) {
		p->h.state = SC_PAIR_OOS;
		p->h.since = wall;
		*events |= SC_EV_DOWN;
	}
}

/* all eligible members missed in this FORCE episode (or none eligible) */
static int sc_all_missed(const sc_pair_t *p)
{
	int i;
	for(i = 0; i < p->nservers; i++)
		if(sc_eligible(p, i) && !(p->h.missed & (1u << i)))
			return 0;
	return 1;
}

/* next member to probe in FORCE mode after member i */
static int sc_next_probe(const sc_pair_t *p, int i)
{
	int o = sc_other(p, i);
	if(sc_eligible(p, o))
		return o;
	return i;
}

static void sc_miss(
		sc_pair_t *p, int srv, int code, long long wall, int *events)
{
	sc_pair_health_t *h = &p->h;
	sc_server_t *s = p->srv[srv];

	s->h.fails++;
	s->h.last_code = code;
	s->h.last_fail = wall;
	h->ping_srv = -1;
	/* the next ping goes out when this one's time is up */
	h->next_ping = h->ping_deadline;
	if(h->ping_claim) {
		h->ping_claim = 0;
		/* a claim that did not hold: the active member still answers its
		 * own probes, nothing changes (a spoofed request) */
		if(h->mode == SC_MODE_CHECK && h->state == SC_PAIR_IN_SERVICE)
			return;
	}
	if(sc_forced(p) >= 0) {
		/* the operator decides who is active: only keep statistics */
		return;
	}
	if(h->mode == SC_MODE_CHECK) {
		h->mode = SC_MODE_FORCE;
		h->missed = 0;
	}
	h->missed |= (1u << srv);
	h->probe_next = sc_next_probe(p, srv);
	if(sc_all_missed(p))
		sc_set_oos(p, wall, events);
}

int sc_health_tick(sc_pair_t *p, const sc_hcfg_t *c, long long now,
		long long wall, sc_ping_t *ping, int *events)
{
	sc_pair_health_t *h = &p->h;
	int target, forced;

	if(p->nservers < 1)
		return 0;
	if(h->ping_srv >= 0 && now >= h->ping_deadline)
		sc_miss(p, h->ping_srv, SC_CODE_TIMEOUT, wall, events);
	if(c->check <= 0 && h->mode == SC_MODE_CHECK && h->claim < 0)
		return 0; /* checking disabled (a claim is still verified) */
	if(h->ping_srv >= 0 || now < h->next_ping)
		return 0;

	forced = sc_forced(p);
	h->ping_claim = 0;
	if(forced >= 0)
		target = forced;
	else if(h->claim >= 0 && h->claim < p->nservers
			&& sc_eligible(p, h->claim)) {
		/* a request claimed this member active: probe it first */
		target = h->claim;
		h->ping_claim = 1;
		h->claim_at = now;
	} else if(h->mode == SC_MODE_CHECK)
		target = h->active;
	else
		target = h->probe_next;
	if(!sc_eligible(p, target) && forced < 0) {
		/* the operator took this member out: try the other one */
		if(!sc_eligible(p, sc_other(p, target))) {
			/* nobody to ping */
			h->next_ping = now + c->force;
			return 0;
		}
		target = sc_other(p, target);
	}
	h->claim = -1;
	h->ping_seq++;
	h->ping_srv = target;
	h->ping_sent = now;
	h->ping_deadline = now + (h->ping_claim ? c->force : sc_ping_timeout(p, c));
	p->srv[target]->h.pings++;
	ping->srv = target;
	ping->seq = h->ping_seq;
	ping->timeout = (int)(h->ping_deadline - now);
	return 1;
}

int sc_health_result(sc_pair_t *p, const sc_hcfg_t *c, int srv,
		unsigned int seq, int code, int alive, long long now, long long wall,
		int *events)
{
	sc_pair_health_t *h = &p->h;
	sc_server_t *s;

	if(srv < 0 || srv >= p->nservers || h->ping_srv != srv
			|| h->ping_seq != seq)
		return 0; /* stale: already counted as missed, or superseded */
	s = p->srv[srv];
	if(!alive) {
		sc_miss(p, srv, code, wall, events);
		return 1;
	}
	s->h.last_code = code;
	s->h.fails = 0;
	s->h.last_answer = wall;
	s->h.rtt = (int)(now - h->ping_sent);
	h->ping_srv = -1;
	h->ping_claim = 0;
	h->next_ping = h->ping_sent + (c->check > 0 ? c->check : c->force);
	if(sc_forced(p) >= 0)
		return 1;
	if(h->mode == SC_MODE_FORCE || h->active != srv
			|| h->state == SC_PAIR_OOS) {
		/* the member that answers is the active one */
		if(sc_eligible(p, srv))
			sc_set_active(p, srv, wall, events);
	}
	return 1;
}

int sc_health_seen_request(
		sc_pair_t *p, int srv, long long now, long long wall, int *events)
{
	sc_pair_health_t *h = &p->h;
	int forced;

	(void)wall;
	(void)events;
	if(srv < 0 || srv >= p->nservers)
		return 0;
	SC_INC(p->srv[srv]->h.requests);
	if(!sc_eligible(p, srv))
		return 0;
	forced = sc_forced(p);
	if(forced >= 0)
		return 0; /* the operator decides */
	if(h->active == srv && h->mode == SC_MODE_CHECK
			&& h->state == SC_PAIR_IN_SERVICE)
		return 0;
	if(h->ping_srv == srv || h->claim == srv)
		return 1; /* its probe is on its way: its answer decides */
	if(h->claim_at != 0 && now - h->claim_at < SC_CLAIM_MIN_MS
			&& now >= h->claim_at)
		return 0; /* one claim probe per pair and second */
	h->claim = srv;
	if(h->ping_srv < 0)
		h->next_ping = now;
	return 1;
}

int sc_health_seen_changes(const sc_pair_t *p, int srv)
{
	if(srv < 0 || srv >= p->nservers)
		return 0;
	return !(SC_RD(p->h.active) == srv && SC_RD(p->h.mode) == SC_MODE_CHECK
			 && SC_RD(p->h.state) == SC_PAIR_IN_SERVICE
			 && SC_RD(p->srv[srv]->h.admin) == SC_ADMIN_AUTO);
}

void sc_health_suspect(sc_pair_t *p, const sc_hcfg_t *c, int srv, long long now)
{
	sc_pair_health_t *h = &p->h;

	if(srv < 0 || srv >= p->nservers)
		return;
	if(h->ping_srv == srv) {
		/* already being probed: do not wait longer than oos_force */
		if(h->ping_deadline > h->ping_sent + c->force)
			h->ping_deadline = h->ping_sent + c->force;
		return;
	}
	if(h->ping_srv >= 0)
		return; /* the other member is being probed: its turn first */
	if(h->mode == SC_MODE_CHECK && h->active != srv)
		return; /* not the member we rely on */
	if(h->mode == SC_MODE_FORCE)
		h->probe_next = srv;
	h->next_ping = now;
}

int sc_health_set_pair_admin(
		sc_pair_t *p, int admin, long long now, long long wall, int *events)
{
	int was = sc_pair_usable(p);

	p->h.admin = admin;
	if(was != sc_pair_usable(p)) {
		p->h.since = wall;
		*events |= was ? SC_EV_DOWN : SC_EV_UP;
	}
	return 0;
}

int sc_health_set_server_admin(sc_pair_t *p, int srv, int admin, long long now,
		long long wall, int *events)
{
	sc_pair_health_t *h = &p->h;
	int was = sc_pair_usable(p);
	int i;

	if(srv < 0 || srv >= p->nservers)
		return -1;
	if(admin == SC_ADMIN_ACTIVE) {
		/* at most one forced member */
		for(i = 0; i < p->nservers; i++)
			if(p->srv[i]->h.admin == SC_ADMIN_ACTIVE)
				p->srv[i]->h.admin = SC_ADMIN_AUTO;
	}
	p->srv[srv]->h.admin = admin;
	h->ping_srv = -1;
	h->ping_seq++;
	h->next_ping = now;
	if(admin == SC_ADMIN_ACTIVE) {
		if(h->active != srv) {
			h->active = srv;
			h->switchovers++;
			*events |= SC_EV_ACTIVE;
		}
		h->state = SC_PAIR_IN_SERVICE;
		h->mode = SC_MODE_CHECK;
		h->missed = 0;
	} else if(admin == SC_ADMIN_OOS && h->active == srv) {
		int o = sc_other(p, srv);
		if(o != srv && sc_eligible(p, o)) {
			/* hand over to the partner and verify it at once */
			h->active = o;
			h->switchovers++;
			*events |= SC_EV_ACTIVE;
			h->mode = SC_MODE_CHECK;
			h->missed = 0;
		}
	} else if(admin == SC_ADMIN_AUTO) {
		/* back to probing: verify the current active member now */
		h->mode = SC_MODE_CHECK;
		h->missed = 0;
	}
	if(was != sc_pair_usable(p)) {
		h->since = wall;
		*events |= was ? SC_EV_DOWN : SC_EV_UP;
	}
	return 0;
}

int sc_srv_recently_failed(
		const sc_server_t *s, long long wall, long long window)
{
	long long fail = SC_RD(s->h.last_fail);

	return SC_RD(s->h.fails) > 0 && fail >= SC_RD(s->h.last_answer)
		   && (window <= 0 || wall - fail <= window);
}

int sc_health_alarm(
		sc_pair_t *p, long long wall, long long interval, unsigned int *held)
{
	if(p->h.alarm_at == 0 || wall - p->h.alarm_at >= interval) {
		*held = p->h.alarm_held;
		p->h.alarm_held = 0;
		p->h.alarm_at = wall;
		p->h.alarm_quiet = 0;
		return 1;
	}
	p->h.alarm_held++;
	p->h.alarm_quiet = 1;
	*held = 0;
	return 0;
}

int sc_pair_usable(const sc_pair_t *p)
{
	int a, admin = SC_RD(p->h.admin);

	if(p->nservers < 1 || admin == SC_ADMIN_OOS)
		return 0;
	if(admin == SC_ADMIN_ACTIVE)
		return 1;
	if(sc_forced(p) >= 0)
		return 1;
	if(SC_RD(p->h.state) == SC_PAIR_OOS)
		return 0;
	a = SC_RD(p->h.active);
	return sc_eligible(p, a);
}

int sc_pair_active_index(const sc_pair_t *p)
{
	int f;

	if(p->nservers < 1)
		return -1;
	f = sc_forced(p);
	if(f >= 0)
		return f;
	return SC_RD(p->h.active);
}

int sc_code_alive(int code, const int *alive_codes)
{
	int i;

	if(code >= 200 && code <= 299)
		return 1;
	for(i = 0; alive_codes && alive_codes[i]; i++)
		if(alive_codes[i] == code)
			return 1;
	return 0;
}

const char *sc_pair_state_name(int state)
{
	return state == SC_PAIR_OOS ? "out-of-service" : "in-service";
}

const char *sc_mode_name(int mode)
{
	return mode == SC_MODE_FORCE ? "force" : "check";
}

const char *sc_admin_name(int admin)
{
	switch(admin) {
		case SC_ADMIN_ACTIVE:
			return "active";
		case SC_ADMIN_OOS:
			return "out-of-service";
	}
	return "auto";
}
