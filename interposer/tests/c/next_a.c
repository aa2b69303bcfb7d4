/* Library A: asks for the *next* definition of whoami() after itself (RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
int whoami(void) { return 1; }
int next_whoami(void) {
  int (*f)(void) = (int (*)(void))dlsym(RTLD_NEXT, "whoami");
  return f ? f() : -1;
}
