/*
 * sipcluster - per-message helpers every entry point needs (sc_msg.c):
 * source classification, refusals, flows, own sockets, per-transaction
 * memory, the reply-source rule. Below routing, registrar, sync and
 * pinger; above sc_state.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_MSG_H_
#define _SC_MSG_H_

#include "../../core/str.h"
#include "../../core/counters.h"
#include "../../core/parser/msg_parser.h"
#include "sc_topo.h"
#include "sc_state.h"

struct cell;
struct socket_info;

/* statistics kept here (several entry points count them) */
extern stat_var *sc_st_refused;
extern stat_var *sc_st_replies_dropped;
extern stat_var *sc_st_flood_dropped;
extern stat_var *sc_st_unavailable;

/* mod_init: binds sl and tm, the refusal-log table; mod_destroy */
int sc_msg_init(void);
void sc_msg_destroy(void);

/* ---- who sent it ---- */
void sc_msg_ip(sip_msg_t *msg, sc_ip_t *ip);
/* who sent msg (sc_src_t of sc_codec.h), computed once per message */
int sc_msg_src(sip_msg_t *msg);
/* the SIP Server of t the message comes from, NULL */
sc_server_t *sc_src_server(sc_topo_t *t, sip_msg_t *msg);
/* the proxy a cluster-channel message comes from (TCP/TLS only), NULL */
sc_proxy_t *sc_src_peer(sc_view_t *v, sip_msg_t *msg);
/* "sip:ip:port[;transport=x]" of the message's source into buf */
int sc_src_flow(sip_msg_t *msg, char *buf, int len);
int ki_sipcluster_from_server(sip_msg_t *msg);
int ki_sipcluster_from_proxy(sip_msg_t *msg);
int ki_sipcluster_from_sbc(sip_msg_t *msg);
int ki_sipcluster_from_cluster(sip_msg_t *msg);
int ki_sipcluster_from_peer(sip_msg_t *msg);

/* ---- this proxy's own sockets ---- */
/* this proxy's listen socket for a transport (NULL when none), on its
 * document address, or for another address family (dual stack) */
struct socket_info *sc_own_socket(int proto);
struct socket_info *sc_own_socket_af(int proto, int af);
/* the request leaves from this proxy's own socket for proto/af */
void sc_force_socket(sip_msg_t *msg, int proto, int af);
/* the transport a URI asks for, and its host's address family (0: name) */
int sc_uri_proto(str *uri, int *af);
int ki_sipcluster_set_socket(sip_msg_t *msg);

/* ---- refusals ---- */
/* log why msg is dropped or refused (code 0: dropped), at most once per
 * source and log_interval */
void sc_refuse_log(sip_msg_t *msg, int code, const char *why);
/* refuse msg: reply code/reason (stateless) and log it, at most once per
 * source and log_interval; returns 0 (the script stops) */
int sc_refuse(sip_msg_t *msg, int code, const char *reason, const char *why);
int ki_sipcluster_deny(sip_msg_t *msg, int code, str *reason);
int ki_sipcluster_flood_drop(sip_msg_t *msg);

/* ---- why the last pick found nothing ($sipcluster(why)), per process */
void sc_why_set(const char *fmt, ...);
void sc_why_clear(void);
const char *sc_why(void);

/* ---- per-transaction memory, $xavp(sipcluster) ---- */
/* the server name of the current branch; -1 when none */
int sc_cur_get(str *out);
/* ";name;name;" of the pairs and servers tried (empty when none) */
void sc_tried_get(str *out);
int sc_tried_has(const str *tried, const str *name);
/* the branch goes to server of pair: current, and tried */
void sc_remember(const str *pair, const str *server);
void sc_remember_cstr(const char *pair, const char *server);

/* ---- replies ---- */
/* 1 when rpl comes from where branch of t went (sc_reply_src_ok) */
int sc_reply_from_branch(struct cell *t, int branch, sip_msg_t *rpl);
int ki_sipcluster_check_reply(sip_msg_t *msg);

#endif
