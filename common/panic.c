/* panic: stop on an impossible state (panic.h). */
#include "common/panic.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void gw_panic(const char *file, int line, const char *msg)
{
    fprintf(stderr, "mcpgate: %s:%d: %s\n", file, line, msg);
    abort();
}
