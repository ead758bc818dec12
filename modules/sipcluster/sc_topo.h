/*
 * sipcluster - cluster document (the "SIP Cluster DN") and in-memory topology
 *
 * This file has no dependency on tm, usrloc or the SIP parser, so the Check
 * unit tests link it directly.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _SC_TOPO_H_
#define _SC_TOPO_H_

#include <stddef.h>
#include "../../core/str.h"
#include "sc_health.h"
#include "sc_codec.h"
#include "sc_rcu.h"

#define SC_DEFAULT_PORT 5060
#define SC_ERR_FILE_MAX 256
#define SC_ERR_REASON_MAX 512

/* values match the core's PROTO_UDP .. PROTO_SCTP (core/ip_addr.h) */
typedef enum sc_transport
{
	SC_TP_UDP = 1,
	SC_TP_TCP = 2,
	SC_TP_TLS = 3,
	SC_TP_SCTP = 4
} sc_transport_t;

typedef enum sc_role
{
	SC_ROLE_PRIMARY = 0,
	SC_ROLE_BACKUP = 1
} sc_role_t;

/* an IP literal in network byte order */
typedef struct sc_ip
{
	int af; /* AF_INET or AF_INET6 */
	unsigned char ip[16];
} sc_ip_t;

struct sc_pair;

typedef struct sc_server
{
	str name;
	str address; /* IP literal as written (IPv6 without brackets) */
	int port;
	int port_explicit; /* the document names the port: it is matched for
						* every transport (see sc_topo_server_by_src) */
	int transport;	   /* sc_transport_t */
	int role;		   /* sc_role_t */
	str uri;		   /* sip:address:port[;transport=x] */
	sc_ip_t ip;
	int line;  /* line of the <server> element in the document */
	int index; /* 0 or 1 inside its pair */
	int admin; /* sc_admin_t from the document, applied at each load */
	struct sc_pair *pair;
	sc_srv_health_t h; /* run-time state, kept across reloads */
} sc_server_t;

typedef struct sc_pair
{
	str name;
	str geo;
	int weight;			 /* 0 = takes no new calls */
	int oos_check;		 /* seconds; -1 = module default */
	int oos_force;		 /* seconds; -1 = module default */
	int nservers;		 /* 1 or 2 */
	sc_server_t *srv[2]; /* srv[0] is the primary */
	int line;
	int index;
	int admin;			/* sc_admin_t from the document, applied at each load */
	sc_pair_health_t h; /* run-time state, kept across reloads */
} sc_pair_t;

typedef struct sc_proxy
{
	str name;
	str address;
	int port;
	int port_explicit;
	int transport;
	str geo;
	str uri; /* sip:address:port[;transport=x] */
	sc_ip_t ip;
	int line;
	int index;
	int server_id; /* Kamailio server_id (1-255), unique */
	str rr_host;   /* host[:port] for the Record-Route (may be empty): a
					* DNS name for the proxies of its geo-location */
	str rr_name;   /* its host part */
	int rr_port;   /* its port, 0 when none is written */
} sc_proxy_t;

/* a Session Border Controller in front of endpoints: the only source a
 * REGISTER may carry a Path from */
typedef struct sc_sbc
{
	str name;
	str address;
	int port;
	int port_explicit;
	int transport;
	str geo; /* may be empty */
	sc_ip_t ip;
	int line;
	int index;
} sc_sbc_t;

/* hash chains over item indexes, built at load time (head[size], next[n]) */
typedef struct sc_index
{
	unsigned int size; /* power of two */
	int *head;
	int *next;
} sc_index_t;

typedef struct sc_topo
{
	str name; /* <sip-cluster name=...> */
	str file; /* the file it was read from */
	int nproxies;
	sc_proxy_t *proxies;
	int npairs;
	sc_pair_t *pairs;
	int nservers;
	sc_server_t *servers;
	int nsbcs;
	sc_sbc_t *sbcs;
	int has_key; /* the document has a secret: pins carry a MAC */
	int xgr_any; /* x-genesys-route="any": honour any X-Genesys-Route hop */
	unsigned char key[SC_KEY_LEN];
	int ngeos; /* distinct geo-locations, in document order */
	str *geos;
	/* per-packet look-ups are hashed, not scanned */
	sc_index_t srv_by_ip;
	sc_index_t px_by_ip;
	sc_index_t px_by_rr; /* proxies with an rr-host, by its host name */
	int px_by_sid[256];	 /* server_id -> proxy index + 1 (0: none) */
	sc_index_t sbc_by_ip;
	sc_index_t pair_by_name;
	sc_index_t srv_by_name;
	sc_index_t srv_by_uid; /* built by sc_topo_carry_state() */
	size_t size;		   /* bytes of the single shm block holding all of it */
	/* retired by a reload: freed once no reader holds it (sc_rcu.h) */
	sc_rcu_node_t rcu;
} sc_topo_t;

/* where and why a cluster document was rejected: the first error found;
 * count says how many there were (see sc_topo_load_each) */
typedef struct sc_error
{
	char file[SC_ERR_FILE_MAX];
	int line; /* 0 when no line applies */
	char reason[SC_ERR_REASON_MAX];
	int count;
	void (*each)(const struct sc_error *e, void *arg);
	void *each_arg;
} sc_error_t;

/* called with every error of a document, in document order within each
 * stage: the loader goes on past an error where that is safe (every
 * schema error; every semantic check: names, server-ids, rr-hosts,
 * addresses, roles), and stops at the first parse or build error */
typedef void (*sc_error_each_f)(const sc_error_t *e, void *arg);

/* Parse and validate a cluster document. schema_file NULL or "" selects the
 * schema built into the module. The result is one shm block (free with
 * sc_topo_free); on error NULL is returned and err says file, line, reason. */
sc_topo_t *sc_topo_load(
		const char *file, const char *schema_file, sc_error_t *err);

/* sc_topo_load, reporting every error to each (sipcluster-check) */
sc_topo_t *sc_topo_load_each(const char *file, const char *schema_file,
		sc_error_t *err, sc_error_each_f each, void *arg);

/* parse and validate the document in the process heap (no shm needed: at
 * cfg parse time); 0 when valid, else -1 and err */
int sc_topo_check_file(
		const char *file, const char *schema_file, sc_error_t *err);

/* same from memory; name is used as the file name in errors */
sc_topo_t *sc_topo_load_mem(const char *buf, int len, const char *name,
		const char *schema_file, sc_error_t *err);

void sc_topo_free(sc_topo_t *t);

/* "file:line: reason" (or "file: reason" when line is 0) into buf */
int sc_error_format(const sc_error_t *err, char *buf, int len);

sc_proxy_t *sc_topo_proxy_by_name(sc_topo_t *t, const str *name);
sc_proxy_t *sc_topo_proxy_by_id(sc_topo_t *t, int server_id);
/* the first proxy whose rr-host is host (case-insensitive) and port (0:
 * none written), or NULL; every proxy with that rr-host shares its
 * geo-location (checked at load) */
sc_proxy_t *sc_topo_proxy_by_rr_host(sc_topo_t *t, const str *host, int port);
sc_pair_t *sc_topo_pair_by_name(sc_topo_t *t, const str *name);
sc_server_t *sc_topo_server_by_name(sc_topo_t *t, const str *name);
sc_server_t *sc_topo_server_by_uid(sc_topo_t *t, unsigned int uid);

/* Server whose address is ip and, when port is non-zero, whose port is port.
 * transport 0 matches any. Returns NULL when none or when ambiguous. */
sc_server_t *sc_topo_server_by_addr(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);
sc_proxy_t *sc_topo_proxy_by_addr(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);

/* Who a message comes from, by its source: ip, source port, transport.
 * The port must match for UDP and SCTP, and for TCP and TLS too when the
 * document names the port explicitly (the peer then connects from its
 * listen port, e.g. Kamailio with tcp_reuse_port); the transport must
 * match. NULL when none or ambiguous. */
sc_server_t *sc_topo_server_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);
sc_proxy_t *sc_topo_proxy_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);
sc_sbc_t *sc_topo_sbc_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);
/* The proxy a cluster-channel message (KDMQ) comes from: its address, over
 * a connection (TCP or TLS, never UDP: a UDP source address can be forged
 * by anybody, a TCP peer had to complete the handshake from it). From its
 * SIP or TLS listen port it is that proxy (whatever transport the document
 * gives the proxy, its SIP port is port, port - 1 for transport tls, its
 * TLS port the next one); from any other port (a connection it opened) the
 * address alone names it, so only when no other proxy shares the address.
 * NULL when none. */
sc_proxy_t *sc_topo_peer_by_src(
		sc_topo_t *t, const sc_ip_t *ip, int port, int transport);
/* 1 when an X-Genesys-Route hop at ip:port may be used: any hop with
 * x-genesys-route="any", else a listed SIP Server, SBC or proxy address */
int sc_topo_xgr_allowed(sc_topo_t *t, const sc_ip_t *ip, int port);

/* Shared memory a proxy needs for a document: SC_SHM_BASE for Kamailio
 * and the modules, and per HA pair its share of the topology (about 1 KB)
 * and of the OPTIONS probes in flight (tm transactions; to silent servers
 * they live for the probe timeout): 10,000 pairs of two silent members
 * held 191 MB in use and peaked at 245 MB (make bench, docscale), so
 * SC_SHM_PER_PAIR leaves that peak a margin. In bytes. */
#define SC_SHM_BASE (32UL << 20)
#define SC_SHM_PER_PAIR (28UL << 10)
unsigned long sc_topo_shm_need(const sc_topo_t *t);

/* Carry run-time state from old to new: a server keeps its state (and uid)
 * when a server with the same name, address, port and transport exists in
 * old; a pair keeps its state when it has the same name and its members are
 * the same servers. Servers new in nt get fresh uids from *next_uid. The
 * administrative state is the document's (admin=), whatever it was. */
void sc_topo_carry_state(
		sc_topo_t *nt, const sc_topo_t *old, unsigned int *next_uid);

const char *sc_transport_name(int transport);
const char *sc_role_name(int role);
int sc_ip_parse(const char *s, int len, sc_ip_t *ip);
int sc_ip_eq(const sc_ip_t *a, const sc_ip_t *b);

#endif
