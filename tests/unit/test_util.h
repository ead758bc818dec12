#ifndef _TEST_UTIL_H_
#define _TEST_UTIL_H_
#include <string.h>
#define STR_IS(x, lit) \
	((x).len == (int)strlen(lit) && memcmp((x).s, (lit), (x).len) == 0)
#endif
