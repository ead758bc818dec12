/*
 * libFuzzer target: the cluster document loader (libxml2 parse, the
 * built-in schema, the checks in C, the shm topology block). Any input must
 * give a topology or an error with a reason, never a crash or a leak.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <libxml/parser.h>

#include "sc_topo.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	xmlInitParser();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sc_error_t err;
	sc_topo_t *t;
	char buf[1024];

	if(size > 256 * 1024)
		return 0;
	t = sc_topo_load_mem((const char *)data, (int)size, "fuzz.xml", NULL, &err);
	if(t == NULL) {
		/* an error always says why */
		sc_error_format(&err, buf, sizeof(buf));
		if(err.reason[0] == '\0')
			__builtin_trap();
		return 0;
	}
	/* look-ups over what was loaded */
	{
		int i;
		for(i = 0; i < t->nservers; i++) {
			if(sc_topo_server_by_name(t, &t->servers[i].name) != &t->servers[i])
				__builtin_trap();
			(void)sc_topo_server_by_src(t, &t->servers[i].ip,
					t->servers[i].port, t->servers[i].transport);
		}
		for(i = 0; i < t->npairs; i++)
			if(t->pairs[i].nservers < 1 || t->pairs[i].nservers > 2)
				__builtin_trap();
	}
	sc_topo_free(t);
	return 0;
}
