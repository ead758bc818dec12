/*
 * sipcluster - OPTIONS probing of the SIP Server HA pairs through tm
 *
 * One process ("sipcluster OPTIONS pinger") ticks every ping_tick ms. Under
 * the lock it advances every pair's state machine and copies out the pings
 * that are due; it sends them through tm after releasing the lock. The tm
 * callback (any process) hands the outcome back to the state machine. The
 * ping timeout is the state machine's own: when tm sends an OPTIONS
 * (TMCB_REQUEST_SENT, in the pinger process, before tm arms its timers) the
 * transaction's final-response timeout becomes the module's timeout plus a
 * margin, so tm's fr_timer neither cuts a probe short nor keeps it longer.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/dprint.h"
#include "../../core/mem/pkg.h"
#include "../../core/parser/msg_parser.h"
#include "../../core/timer_ticks.h"
#include "../../modules/tm/tm_load.h"
#include "../../modules/tm/h_table.h"

#include "sc_ping.h"
#include "sc_msg.h"
#include "sc_state.h"
#include "sc_topo.h"
#include "sc_health.h"

#define SC_URI_BUF 96
/* tm's timeout of a probe is the module's plus this (ms): the module
 * decides first, from its own clock */
#define SC_PING_MARGIN 250

typedef struct sc_ping_out
{
	char uri[SC_URI_BUF];
	int urilen;
	char sock[SC_URI_BUF]; /* "proto:addr:port" of this proxy, or "" */
	int socklen;
	unsigned int uid;
	unsigned int seq;
	int timeout; /* ms */
	int transport;
	int af;
} sc_ping_out_t;

static struct tm_binds sc_tmb;
static str sc_options = str_init("OPTIONS");

/* modparams */
char *sc_alive_codes_str = NULL;
int sc_alive_codes[SC_MAX_ALIVE_CODES + 1] = {0};
str sc_ping_from = str_init("sip:sipcluster@localhost");
int sc_ping_tick = 100; /* ms */

stat_var *sc_st_pings = NULL;
stat_var *sc_st_ping_failures = NULL;

/* per-process scratch (pinger process) */
static sc_ping_out_t *sc_out = NULL;
static sc_transition_t *sc_tr = NULL;
static int sc_out_size = 0;
/* the module timeout of the OPTIONS being sent (pinger process, set around
 * t_request(): TMCB_REQUEST_SENT runs inside it) */
static int sc_ping_cur_timeout = 0;

static int sc_parse_alive_codes(void)
{
	char *p, *end;
	long v;
	int n = 0;

	memset(sc_alive_codes, 0, sizeof(sc_alive_codes));
	if(sc_alive_codes_str == NULL)
		return 0;
	p = sc_alive_codes_str;
	while(*p) {
		while(*p == ' ' || *p == ',' || *p == ';')
			p++;
		if(*p == '\0')
			break;
		v = strtol(p, &end, 10);
		if(end == p || v < 100 || v > 699) {
			LM_ERR("alive_codes: '%s' is not a list of SIP reply codes "
				   "(e.g. \"405,501\")\n",
					sc_alive_codes_str);
			return -1;
		}
		if(n >= SC_MAX_ALIVE_CODES) {
			LM_ERR("alive_codes: at most %d codes\n", SC_MAX_ALIVE_CODES);
			return -1;
		}
		sc_alive_codes[n++] = (int)v;
		p = end;
	}
	return 0;
}


int sc_ping_init(void)
{
	if(sc_ping_tick < 10 || sc_ping_tick > 1000) {
		LM_ERR("ping_tick must be 10 to 1000 ms, not %d\n", sc_ping_tick);
		return -1;
	}
	if(sc_parse_alive_codes() < 0)
		return -1;
	if(load_tm_api(&sc_tmb) < 0) {
		LM_ERR("cannot bind the tm API: load tm.so before sipcluster.so\n");
		return -1;
	}
	return 0;
}

static void *sc_key(unsigned int uid, unsigned int seq)
{
	return (void *)(((unsigned long)uid << 32) | (unsigned long)seq);
}

/* apply a ping outcome; called without the lock */
static void sc_ping_outcome(
		unsigned int uid, unsigned int seq, int code, int faked)
{
	sc_server_t *s;
	sc_pair_t *p;
	sc_hcfg_t c;
	sc_transition_t tr;
	int events = 0, prev, alive, taken = 0;
	char reason[64];

	alive = !faked && sc_code_alive(code, sc_alive_codes);
	if(alive)
		snprintf(reason, sizeof(reason), "answered OPTIONS with %d", code);
	else if(code == SC_CODE_SEND_ERROR)
		snprintf(reason, sizeof(reason), "OPTIONS could not be sent");
	else if(faked)
		snprintf(reason, sizeof(reason), "OPTIONS not answered (tm %d)", code);
	else
		snprintf(reason, sizeof(reason), "answered OPTIONS with %d", code);

	s = sc_topo_server_by_uid(sc_state_lock(), uid);
	if(s != NULL) {
		p = s->pair;
		sc_pair_hcfg(p, &c);
		prev = sc_pair_active_index(p);
		if(alive && p->h.ping_claim && p->h.ping_srv == s->index
				&& p->h.ping_seq == seq)
			snprintf(reason, sizeof(reason),
					"request received from it, confirmed by OPTIONS %d", code);
		taken = sc_health_result(p, &c, s->index, seq, code, alive, sc_now_ms(),
				sc_wall_ms(), &events);
		if(events)
			sc_transition_fill(&tr, p, events, prev, reason);
	}
	sc_state_unlock();
	if(taken && !alive)
		update_stat(sc_st_ping_failures, 1);
	if(events)
		sc_transition_report(&tr);
}

static void sc_ping_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	unsigned long key;

	if(ps == NULL || ps->param == NULL)
		return;
	if(type & TMCB_REQUEST_SENT) {
		if(t != NULL && sc_ping_cur_timeout > 0) {
			ticks_t now = get_ticks_raw();
			ticks_t fr = MS_TO_TICKS(sc_ping_cur_timeout + SC_PING_MARGIN);
			t->fr_timeout = fr;
			if((s_ticks_t)(t->end_of_life - (now + fr)) < 0)
				t->end_of_life = now + fr;
		}
		return;
	}
	key = (unsigned long)(*ps->param);
	sc_ping_outcome((unsigned int)(key >> 32), (unsigned int)key, ps->code,
			ps->rpl == FAKED_REPLY);
}

static int sc_ping_grow(int n)
{
	sc_ping_out_t *o;
	sc_transition_t *t;

	if(n <= sc_out_size)
		return 0;
	o = pkg_realloc(sc_out, n * sizeof(*o));
	if(o == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	sc_out = o;
	t = pkg_realloc(sc_tr, n * sizeof(*t));
	if(t == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	sc_tr = t;
	sc_out_size = n;
	return 0;
}

void sc_ping_utimer(unsigned int ticks, void *param)
{
	sc_topo_t *t;
	int i, r, nout = 0, ntr = 0, nmiss = 0;
	long long now, wall;
	uac_req_t uac_r;
	str uri, sock;

	if(!sc_state_ready())
		return;
	now = sc_now_ms();
	wall = sc_wall_ms();

	t = sc_state_lock();
	if(sc_ping_grow(t->npairs > 0 ? t->npairs : 1) < 0) {
		sc_state_unlock();
		return;
	}
	for(i = 0; i < t->npairs; i++) {
		sc_pair_t *p = &t->pairs[i];
		sc_hcfg_t c;
		sc_ping_t ping;
		int events = 0, prev, timed_out;

		sc_pair_hcfg(p, &c);
		prev = sc_pair_active_index(p);
		timed_out = (p->h.ping_srv >= 0 && now >= p->h.ping_deadline);
		if(sc_health_tick(p, &c, now, wall, &ping, &events)) {
			sc_server_t *s = p->srv[ping.srv];
			sc_ping_out_t *o = &sc_out[nout++];
			o->urilen = snprintf(
					o->uri, sizeof(o->uri), "%.*s", s->uri.len, s->uri.s);
			o->socklen = 0;
			o->transport = s->transport;
			o->af = s->ip.af;
			o->uid = s->h.uid;
			o->seq = ping.seq;
			o->timeout = ping.timeout;
		}
		if(timed_out)
			nmiss++;
		if(events) {
			sc_transition_fill(&sc_tr[ntr++], p, events, prev,
					"OPTIONS not answered in time");
		} else if(p->h.alarm_quiet && !sc_pair_usable(p)
				  && wall - p->h.alarm_at >= 1000LL * sc_log_interval) {
			/* outages held back (flapping) and down now: the alarm */
			sc_transition_realarm(&sc_tr[ntr++], p);
		}
	}
	/* new schedules for the requests, and what they no longer read freed */
	sc_state_unlock();

	if(nmiss)
		update_stat(sc_st_ping_failures, nmiss);
	for(i = 0; i < ntr; i++)
		sc_transition_report(&sc_tr[i]);

	for(i = 0; i < nout; i++) {
		sc_ping_out_t *o = &sc_out[i];
		uri.s = o->uri;
		uri.len = o->urilen;
		{
			/* from this proxy's own socket for the server's transport */
			struct socket_info *si = sc_own_socket_af(o->transport, o->af);
			if(si != NULL && si->sock_str.len < (int)sizeof(o->sock)) {
				memcpy(o->sock, si->sock_str.s, si->sock_str.len);
				o->socklen = si->sock_str.len;
			}
		}
		sock.s = o->sock;
		sock.len = o->socklen;
		set_uac_req(&uac_r, &sc_options, 0, 0, 0,
				TMCB_LOCAL_COMPLETED | TMCB_REQUEST_SENT, sc_ping_cb,
				sc_key(o->uid, o->seq));
		if(o->socklen > 0)
			uac_r.ssock = &sock;
		update_stat(sc_st_pings, 1);
		sc_ping_cur_timeout = o->timeout;
		r = sc_tmb.t_request(&uac_r, &uri, &uri, &sc_ping_from, 0);
		sc_ping_cur_timeout = 0;
		if(r < 0) {
			LM_DBG("cannot send OPTIONS to %.*s\n", uri.len, uri.s);
			sc_ping_outcome(o->uid, o->seq, SC_CODE_SEND_ERROR, 0);
		}
	}
}
