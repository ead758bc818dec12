/*
 * sipcluster - active out-of-service detection (the HA pair state machine)
 *
 * Pure logic: driven by a clock value and by ping outcomes handed in by the
 * caller, it never sends anything itself. The Kamailio glue (sc_ping.c) turns
 * its decisions into SIP OPTIONS through tm. No tm/usrloc dependency, so the
 * Check unit tests drive it with a fake clock.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_HEALTH_H_
#define _SC_HEALTH_H_

/* operator override, set with sipcluster.set_state */
typedef enum sc_admin
{
	SC_ADMIN_AUTO = 0,
	SC_ADMIN_ACTIVE = 1,
	SC_ADMIN_OOS = 2
} sc_admin_t;

typedef enum sc_pair_state
{
	SC_PAIR_IN_SERVICE = 0,
	SC_PAIR_OOS = 1
} sc_pair_state_t;

typedef enum sc_mode
{
	SC_MODE_CHECK = 0, /* the active member answers: ping it every oos_check */
	SC_MODE_FORCE = 1  /* unknown: alternate between members every oos_force */
} sc_mode_t;

/* pseudo reply codes for outcomes that carry no SIP reply */
#define SC_CODE_TIMEOUT 408	   /* not answered within the module's timeout */
#define SC_CODE_SEND_ERROR 477 /* t_request() failed (transport error) */

typedef struct sc_srv_health
{
	unsigned int uid;	   /* stable id across reloads (ping callback key) */
	int admin;			   /* sc_admin_t */
	int last_code;		   /* last reply code (or pseudo code), 0 = none yet */
	long long last_answer; /* wall-clock ms of the last alive answer, 0 never */
	long long last_fail;   /* wall-clock ms of the last missed probe, 0 never */
	int fails;			   /* consecutive failed pings */
	int rtt; /* ms, round-trip of the last answered ping, -1 unknown */
	unsigned long pings;	/* pings sent to this server */
	unsigned long requests; /* SIP requests seen from this server */
	/* pings, requests as last added to the Prometheus counters (sc_prom.c:
	 * each scrape adds the difference, claimed by compare-and-swap) */
	unsigned long exported[2];
} sc_srv_health_t;

typedef struct sc_pair_health
{
	int active;			 /* index of the active member */
	int state;			 /* sc_pair_state_t */
	int mode;			 /* sc_mode_t */
	int admin;			 /* sc_admin_t: ACTIVE = in service whatever pings say,
					   * OOS = drained */
	long long next_ping; /* monotonic ms at which the next ping is due */
	int ping_srv;		 /* member index of the outstanding ping, -1 none */
	unsigned int ping_seq;	 /* sequence of the outstanding ping */
	long long ping_sent;	 /* monotonic ms */
	long long ping_deadline; /* monotonic ms */
	int probe_next;			 /* FORCE mode: member to probe next */
	unsigned int missed;	 /* bit per member: missed in this FORCE episode */
	long long since;		 /* wall-clock ms of the last state change */
	unsigned long switchovers;
	unsigned long calls;	 /* new calls/transactions routed to this pair */
	unsigned long registers; /* REGISTERs relayed to this pair */
	unsigned long failovers; /* requests failed over away from a member */
	/* calls, registers, switchovers, failovers as last added to the
	 * Prometheus counters (sc_prom.c) */
	unsigned long exported[4];
	long long swrr;			 /* smooth weighted round-robin current weight */
	long long alarm_at;		 /* wall-clock ms of the last [40001] logged */
	unsigned int alarm_held; /* out-of-service alarms held back since */
	int alarm_quiet;		 /* the last one was held back (and its UP) */
	int claim;			 /* member a request claimed active, to probe next
						  * (-1 none) */
	int ping_claim;		 /* the outstanding ping verifies a claim */
	long long claim_at;	 /* monotonic ms of the last claim probe sent */
} sc_pair_health_t;

struct sc_pair;
struct sc_server;

/* effective timing of one pair, in ms */
typedef struct sc_hcfg
{
	int check; /* 0 = checking disabled */
	int force;
} sc_hcfg_t;

/* a ping the caller must send now */
typedef struct sc_ping
{
	int srv;		  /* member index */
	unsigned int seq; /* pass back to sc_health_reply() */
	int timeout;	  /* ms */
} sc_ping_t;

/* transition events (bit mask) */
#define SC_EV_ACTIVE 1 /* another member became active */
#define SC_EV_DOWN 2   /* pair went out of service */
#define SC_EV_UP 4	   /* pair came back into service */

/* fresh state: primary active, in service, first ping due at now */
void sc_health_reset(struct sc_pair *p, long long now);

/* Advance the pair's clock. Declares the outstanding ping missed when its
 * deadline passed. Returns 1 and fills *ping when a ping is due now. */
int sc_health_tick(struct sc_pair *p, const sc_hcfg_t *c, long long now,
		long long wall, sc_ping_t *ping, int *events);

/* Outcome of ping seq to member srv: code is the SIP reply code or a pseudo
 * code; alive says whether it counts as an answer. Stale sequences are
 * ignored (return 0); returns 1 when the outcome was taken. */
int sc_health_result(struct sc_pair *p, const sc_hcfg_t *c, int srv,
		unsigned int seq, int code, int alive, long long now, long long wall,
		int *events);

/* A dialog-forming SIP request arrived from member srv: it claims to be
 * the active one (a switchover). A claim is never believed on its own (one
 * spoofed UDP packet would move a pair): it makes member srv the next one
 * probed, at once, with the oos_force timeout, and only an alive answer
 * makes it active (sc_health_result). A claim probe that fails changes no
 * mode in CHECK mode (the active member still answers). One claim probe
 * per pair per SC_CLAIM_MIN_MS at most. Returns 1 when a probe was asked
 * for (or one of srv is outstanding), 0 when nothing is to be done. */
#define SC_CLAIM_MIN_MS 1000
int sc_health_seen_request(
		struct sc_pair *p, int srv, long long now, long long wall, int *events);

/* Whether sc_health_seen_request() could change anything: 0 when member
 * srv is already the active one, probed in CHECK mode, in service and not
 * overridden (the common case, decided without the lock; racy reads). */
int sc_health_seen_changes(const struct sc_pair *p, int srv);

/* A request routed to member srv failed (timeout, 503): probe it at once,
 * with the oos_force timeout. */
void sc_health_suspect(
		struct sc_pair *p, const sc_hcfg_t *c, int srv, long long now);

/* Operator overrides; on == SC_ADMIN_AUTO returns to probing. */
int sc_health_set_pair_admin(struct sc_pair *p, int admin, long long now,
		long long wall, int *events);
int sc_health_set_server_admin(struct sc_pair *p, int srv, int admin,
		long long now, long long wall, int *events);

/* A member whose last probe failed (no answer, or not alive) at most
 * `window` ms ago (window <= 0: whenever) and that has not answered since:
 * no request is failed over to it. A silent backup probed long ago is
 * tried (it may have become active since). */
int sc_srv_recently_failed(
		const struct sc_server *s, long long wall, long long window);

/* A flapping pair is not an alarm storm: an out-of-service transition is
 * logged as an alarm when none was within `interval` ms, else held back
 * (counted; the back-in-service line of a held-back one is quiet too).
 * Call once per SC_EV_DOWN: 1 = log it, with *held the ones held back
 * since the last; 0 = held back. */
int sc_health_alarm(struct sc_pair *p, long long wall, long long interval,
		unsigned int *held);

/* whether the pair can take traffic, and its active member index (-1) */
int sc_pair_usable(const struct sc_pair *p);
int sc_pair_active_index(const struct sc_pair *p);

/* default alive rule: 2xx, or a code in the list (0-terminated) */
int sc_code_alive(int code, const int *alive_codes);

const char *sc_pair_state_name(int state);
const char *sc_mode_name(int mode);
const char *sc_admin_name(int admin);

#endif
