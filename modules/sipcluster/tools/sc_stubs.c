/*
 * Minimal stand-ins for the Kamailio core symbols that module code reaches
 * through macros (LM_*, shm_*, pkg_*), so the SIP-free parts of sipcluster
 * (cluster document, health, selection, codecs) link into programs outside
 * Kamailio: sipcluster-check, the Check unit tests, the fuzzers and the
 * selection benchmark. Compiled with the module's own C_DEFS.
 *
 * This file is part of sipcluster, a Kamailio module.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <syslog.h>
#include <unistd.h>
#include "../../core/dprint.h"
#include "../../core/mem/shm.h"
#include "../../core/mem/pkg.h"

int process_no = 0;
int log_stderr = 1;
int log_color = 0;
str *log_prefix_val = NULL;
volatile int dprint_crit = 0;
ksr_slog_f _ksr_slog_func = NULL;
int ksr_stub_debug = L_ERR;

/* 9 entries, indexed by level - L_ALERT, like core/dprint.c */
struct log_level_info log_level_info[] = {{"ALERT", LOG_ALERT},
		{"BUG", LOG_CRIT}, {"CRITICAL", LOG_CRIT}, {"", LOG_CRIT},
		{"ERROR", LOG_ERR}, {"WARNING", LOG_WARNING}, {"NOTICE", LOG_NOTICE},
		{"INFO", LOG_INFO}, {"DEBUG", LOG_DEBUG}};

int my_pid(void)
{
	return (int)getpid();
}
int get_debug_level(char *m, int l)
{
	return ksr_stub_debug;
}
int get_debug_facility(char *m, int l)
{
	return 0;
}
void dprint_color(int level)
{
}
void dprint_color_reset(void)
{
}
static void ksr_stub_log(int lev, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}
km_log_f _km_log_func = ksr_stub_log;

long stub_shm_allocated = 0;

static void *st_malloc(void *b, size_t s, const char *f, const char *fn,
		unsigned int l, const char *m)
{
	stub_shm_allocated++;
	return malloc(s);
}
static void *st_mallocxz(void *b, size_t s, const char *f, const char *fn,
		unsigned int l, const char *m)
{
	stub_shm_allocated++;
	return calloc(1, s);
}
static void *st_realloc(void *b, void *p, size_t s, const char *f,
		const char *fn, unsigned int l, const char *m)
{
	return realloc(p, s);
}
static void st_free(void *b, void *p, const char *f, const char *fn,
		unsigned int l, const char *m)
{
	if(p)
		stub_shm_allocated--;
	free(p);
}
sr_shm_api_t _shm_root = {.mname = "stub",
		.xmalloc = st_malloc,
		.xmallocxz = st_mallocxz,
		.xmalloc_unsafe = st_malloc,
		.xrealloc = st_realloc,
		.xreallocxf = st_realloc,
		.xresize = st_realloc,
		.xfree = st_free,
		.xfree_unsafe = st_free};
sr_pkg_api_t _pkg_root = {.mname = "stub",
		.xmalloc = st_malloc,
		.xmallocxz = st_mallocxz,
		.xrealloc = st_realloc,
		.xreallocxf = st_realloc,
		.xfree = st_free};
