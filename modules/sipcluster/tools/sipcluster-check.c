/*
 * sipcluster-check: validate a cluster document with exactly the code the
 * module loads it with (libxml2, the built-in schema, the checks in C), and
 * write the per-node include of the shipped kamailio.cfg for one proxy.
 *
 *   sipcluster-check [--schema XSD] [--proxy NAME] FILE
 *       "FILE: ok: ..." and exit 0, or "FILE:LINE: reason" and exit 1
 *   sipcluster-check --render NAME [--tls-cfg TLSCFG] [--schema XSD] FILE
 *       the include (import_file) with LISTEN_ADDR, LISTEN_PORT, TLS_PORT,
 *       PROXY_NAME, GEO_LOCATION, CLUSTER_FILE, SERVER_ID, DMQ_SERVER and
 *       DMQ_NOTIFY_1..8 of proxy NAME, on stdout
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <libxml/parser.h>

#include "../sc_topo.h"

#define SC_MAX_NOTIFY 8

static void usage(void)
{
	fprintf(stderr,
			"usage: sipcluster-check [--schema XSD] [--proxy NAME] FILE\n"
			"       sipcluster-check --render NAME [--tls-cfg TLSCFG] "
			"[--schema XSD] FILE\n");
	exit(2);
}

/* host part of a URI: IPv6 literals in brackets */
static void host(const sc_proxy_t *p, char *buf, int len)
{
	if(p->ip.af == 10 /* AF_INET6 */)
		snprintf(buf, len, "[%.*s]", p->address.len, p->address.s);
	else
		snprintf(buf, len, "%.*s", p->address.len, p->address.s);
}

static const char *tp_param(int tp)
{
	switch(tp) {
		case SC_TP_TCP:
			return ";transport=tcp";
		case SC_TP_TLS:
			return ";transport=tls";
		case SC_TP_SCTP:
			return ";transport=sctp";
	}
	return "";
}

/* DMQ (the cluster channel) runs over a connection: TCP for a proxy the
 * document reaches over UDP (or SCTP), TLS for one it reaches over TLS */
static const char *dmq_tp_param(int tp)
{
	return tp == SC_TP_TLS ? ";transport=tls" : ";transport=tcp";
}

static int render(
		sc_topo_t *t, const char *name, const char *file, const char *tlscfg)
{
	str n;
	sc_proxy_t *me;
	char h[80], path[PATH_MAX], tpath[PATH_MAX];
	int i, k = 0, sipport, tlsport;

	n.s = (char *)name;
	n.len = strlen(name);
	me = sc_topo_proxy_by_name(t, &n);
	if(me == NULL) {
		fprintf(stderr,
				"%s: [40000] proxy '%s' is not found in the list of proxies "
				"of cluster '%.*s'\n",
				file, name, t->name.len, t->name.s);
		return 1;
	}
	if(realpath(file, path) == NULL)
		snprintf(path, sizeof(path), "%s", file);
	/* SIP over UDP+TCP on one port, TLS on the next one: the document
	 * names the one other proxies reach this one on */
	sipport = me->port;
	tlsport = me->port + 1;
	if(me->transport == SC_TP_TLS) {
		sipport = me->port - 1;
		tlsport = me->port;
	}
	host(me, h, sizeof(h));
	printf("# per-node values of proxy '%s' for the shipped kamailio.cfg\n"
		   "# (import_file NODE_CFG), written by sipcluster-check --render "
		   "from\n# %s: render it again when the document changes\n",
			name, path);
	printf("#!trydef LISTEN_ADDR %s\n", h);
	/* connections it opens come from its own address (the cluster channel
	 * names a proxy by it), from an ephemeral port */
	printf("#!trydef TCP_SOURCE_%s %.*s\n",
			me->ip.af == 10 /* AF_INET6 */ ? "IPV6" : "IPV4", me->address.len,
			me->address.s);
	printf("#!trydef LISTEN_PORT %d\n", sipport);
	printf("#!trydef TLS_PORT %d\n", tlsport);
	printf("#!trydef PROXY_NAME \"%s\"\n", name);
	printf("#!trydef GEO_LOCATION \"%.*s\"\n", me->geo.len, me->geo.s);
	printf("#!trydef CLUSTER_FILE \"%s\"\n", path);
	printf("#!trydef SERVER_ID %d\n", me->server_id);
	printf("#!trydef DMQ_SERVER \"sip:%s:%d%s\"\n", h, me->port,
			dmq_tp_param(me->transport));
	for(i = 0; i < t->nproxies && k < SC_MAX_NOTIFY; i++) {
		sc_proxy_t *p = &t->proxies[i];
		if(p == me)
			continue;
		host(p, h, sizeof(h));
		printf("#!trydef DMQ_NOTIFY_%d \"sip:%s:%d%s\"\n", ++k, h, p->port,
				dmq_tp_param(p->transport));
	}
	if(tlscfg && tlscfg[0]) {
		if(realpath(tlscfg, tpath) == NULL) {
			fprintf(stderr, "%s: cannot read the tls configuration\n", tlscfg);
			return 1;
		}
		printf("#!ifndef WITH_TLS\n#!define WITH_TLS\n#!endif\n");
		printf("#!trydef TLS_CFG \"%s\"\n", tpath);
	}
	return 0;
}

/* every error of the document, as file:line: reason, as it is found */
static void print_error(const sc_error_t *e, void *arg)
{
	char buf[1024];

	sc_error_format(e, buf, sizeof(buf));
	fprintf(stderr, "%s\n", buf);
}

int main(int argc, char **argv)
{
	const char *schema = NULL, *proxy = NULL, *rname = NULL, *tlscfg = NULL;
	const char *file = NULL;
	sc_error_t err;
	sc_topo_t *t;
	char buf[1024];
	int i, ret = 0;

	for(i = 1; i < argc; i++) {
		if(strcmp(argv[i], "--schema") == 0 && i + 1 < argc)
			schema = argv[++i];
		else if(strcmp(argv[i], "--proxy") == 0 && i + 1 < argc)
			proxy = argv[++i];
		else if(strcmp(argv[i], "--render") == 0 && i + 1 < argc)
			rname = argv[++i];
		else if(strcmp(argv[i], "--tls-cfg") == 0 && i + 1 < argc)
			tlscfg = argv[++i];
		else if(argv[i][0] == '-')
			usage();
		else if(file == NULL)
			file = argv[i];
		else
			usage();
	}
	if(file == NULL)
		usage();
	xmlInitParser();
	t = sc_topo_load_each(file, schema, &err, print_error, NULL);
	if(t == NULL) {
		if(err.count == 0) {
			sc_error_format(&err, buf, sizeof(buf));
			fprintf(stderr, "%s\n", buf);
		} else if(err.count > 1) {
			fprintf(stderr, "%s: %d errors\n", file, err.count);
		}
		return 1;
	}
	if(rname) {
		ret = render(t, rname, file, tlscfg);
	} else {
		if(proxy) {
			str n = {(char *)proxy, (int)strlen(proxy)};
			if(sc_topo_proxy_by_name(t, &n) == NULL) {
				fprintf(stderr,
						"%s: [40000] proxy '%s' is not found in the list of "
						"proxies of cluster '%.*s'\n",
						file, proxy, t->name.len, t->name.s);
				ret = 1;
			}
		}
		if(ret == 0)
			printf("%s: ok: cluster '%.*s', %d proxies, %d HA pairs, %d "
				   "servers, %d SBCs%s\n",
					file, t->name.len, t->name.s, t->nproxies, t->npairs,
					t->nservers, t->nsbcs,
					t->has_key ? "" : " (no secret: pins carry no MAC)");
	}
	sc_topo_free(t);
	xmlCleanupParser();
	return ret;
}
