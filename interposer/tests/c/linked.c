/* Linked directly against libcuda.so.1 and libnvidia-ml.so.1 (no dlopen): the interposer must
 * catch these calls through LD_PRELOAD symbol precedence. */
#include "cuda_min.h"
#include <stdio.h>
#include <stdlib.h>

#define PROTO(ret, name, args) ret name args;
CU_FUNCS(PROTO)
NVML_FUNCS(PROTO)

int main(int argc, char **argv) {
  size_t limit = strtoull(argv[1], 0, 0);
  CUdevice d; CUcontext c; CUdeviceptr p, q;
  if (cuInit(0) || cuDeviceGet(&d, 0) || cuDevicePrimaryCtxRetain(&c, d) || cuCtxSetCurrent(c)) return 2;
  printf("LINKED first=%d\n", cuMemAlloc_v2(&p, limit));
  printf("LINKED second=%d\n", cuMemAlloc_v2(&q, 1));
  size_t fr, tot;
  cuMemGetInfo_v2(&fr, &tot);
  printf("LINKED meminfo free=%zu total=%zu\n", fr, tot);
  nvmlDevice_t h; nvmlMemory_t m;
  if (nvmlInit_v2() == 0 && nvmlDeviceGetHandleByIndex_v2(0, &h) == 0 && nvmlDeviceGetMemoryInfo(h, &m) == 0)
    printf("LINKED nvml total=%llu used=%llu\n", m.total, m.used);
  return 0;
}
