/* Linked against next_a then next_b: dlsym(RTLD_NEXT) from A must find B's whoami (2), even
 * with the interposer's dlsym in front. */
#include <stdio.h>
int next_whoami(void);
int main(void) { printf("RTLD_NEXT whoami=%d\n", next_whoami()); return 0; }
