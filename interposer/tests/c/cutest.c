/* Test driver for the hami-rs interposer. Loads libcuda.so.1 the way frameworks do (dlopen +
 * dlsym, or cuGetProcAddress) and runs one scenario chosen by argv[1]; prints lines the Rust
 * integration test parses. */
#define _GNU_SOURCE
#include "cuda_min.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DECL(ret, name, args) typedef ret(*name##_t) args; static name##_t name;
CU_FUNCS(DECL)
NVML_FUNCS(DECL)

static CUfunction kfn;
static int failures;

static void load(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW);
  if (!h) { fprintf(stderr, "dlopen libcuda.so.1: %s\n", dlerror()); exit(2); }
#define LOAD(ret, name, args) name = (name##_t)dlsym(h, #name); \
  if (!name) { fprintf(stderr, "missing %s\n", #name); exit(2); }
  CU_FUNCS(LOAD)
}

static void setup(void) {
  CUdevice d; CUcontext c; CUmodule m;
  load();
  if (cuInit(0) || cuDeviceGet(&d, 0) || cuDevicePrimaryCtxRetain(&c, d) || cuCtxSetCurrent(c)) {
    fprintf(stderr, "context setup failed\n"); exit(2);
  }
  if (cuModuleLoadData(&m, "fake") || cuModuleGetFunction(&kfn, m, "kernel")) {
    fprintf(stderr, "module setup failed\n"); exit(2);
  }
}

static double now_s(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void check(const char *path, const char *what, CUresult got, CUresult want) {
  if (got != want) {
    printf("PATH %s FAIL %s: got %d want %d\n", path, what, got, want);
    failures++;
  }
}

/* --- one allocation path: allocate `n` units of `unit` bytes, free it ----------------------- */
typedef struct { CUdeviceptr p; CUarray a; CUmemGenericAllocationHandle h; } Obj;
typedef CUresult (*AllocFn)(size_t bytes, Obj *o);
typedef CUresult (*FreeFn)(Obj *o);

static CUresult a_mem(size_t b, Obj *o) { return cuMemAlloc_v2(&o->p, b); }
static CUresult f_mem(Obj *o) { return cuMemFree_v2(o->p); }
static CUresult a_pitch(size_t b, Obj *o) { size_t pitch; return cuMemAllocPitch_v2(&o->p, &pitch, b, 1, 4); }
static CUresult a_managed(size_t b, Obj *o) { return cuMemAllocManaged(&o->p, b, 1); }
static CUresult a_async(size_t b, Obj *o) { return cuMemAllocAsync(&o->p, b, 0); }
static CUresult f_async(Obj *o) { return cuMemFreeAsync(o->p, 0); }
static CUmemoryPool default_pool, own_pool;
static CUresult a_pool(size_t b, Obj *o) { return cuMemAllocFromPoolAsync(&o->p, b, default_pool, 0); }
static CUresult a_ownpool(size_t b, Obj *o) { return cuMemAllocFromPoolAsync(&o->p, b, own_pool, 0); }
static CUresult a_array(size_t b, Obj *o) {
  CUDA_ARRAY_DESCRIPTOR d = {b / 4, 0, 0x20 /* FLOAT */, 1};
  return cuArrayCreate_v2(&o->a, &d);
}
static CUresult a_array3d(size_t b, Obj *o) {
  CUDA_ARRAY3D_DESCRIPTOR d = {b / 4, 1, 1, 0x20, 1, 0};
  return cuArray3DCreate_v2(&o->a, &d);
}
static CUresult f_array(Obj *o) { return cuArrayDestroy(o->a); }
static CUresult a_vmm(size_t b, Obj *o) {
  CUmemAllocationProp p; memset(&p, 0, sizeof p);
  p.type = 1; p.location.type = 1; p.location.id = 0;
  CUresult r = cuMemCreate(&o->h, b, &p, 0);
  if (r == 0) { /* map it too: mapping must not count twice */
    CUdeviceptr va; if (cuMemAddressReserve(&va, b, 0, 0, 0) == 0) { cuMemMap(va, b, 0, o->h, 0); cuMemUnmap(va, b); }
  }
  return r;
}
static CUresult f_vmm(Obj *o) { return cuMemRelease(o->h); }

/* cuMemAlloc resolved through cuGetProcAddress / _v2, as the CUDA runtime does. */
static CUresult (*gpa_alloc)(CUdeviceptr *, size_t);
static CUresult a_gpa(size_t b, Obj *o) { return gpa_alloc(&o->p, b); }

static void run_path(const char *name, AllocFn a, FreeFn f, size_t limit, size_t unit) {
  Obj o1, o2, o3; memset(&o1, 0, sizeof o1); memset(&o2, 0, sizeof o2); memset(&o3, 0, sizeof o3);
  int before = failures;
  check(name, "alloc up to the limit", a(limit, &o1), 0);
  check(name, "one unit more", a(unit, &o2), 2);
  check(name, "free", f(&o1), 0);
  check(name, "alloc again after free", a(limit, &o3), 0);
  check(name, "free again", f(&o3), 0);
  size_t fr = 0, tot = 0;
  cuMemGetInfo_v2(&fr, &tot);
  if (failures == before) printf("PATH %s ok (after: free=%zu total=%zu)\n", name, fr, tot);
  else printf("PATH %s after: free=%zu total=%zu\n", name, fr, tot);
}

static int cmd_paths(size_t limit) {
  setup();
  cuDeviceGetDefaultMemPool(&default_pool, 0);
  CUmemPoolProps pp; memset(&pp, 0, sizeof pp); pp.allocType = 1; pp.location.type = 1; pp.location.id = 0;
  if (cuMemPoolCreate(&own_pool, &pp)) { printf("PATH pool_create FAIL\n"); failures++; }
  run_path("cuMemAlloc_v2", a_mem, f_mem, limit, 1);
  run_path("cuMemAllocPitch_v2", a_pitch, f_mem, limit, 1);
  run_path("cuMemAllocManaged", a_managed, f_mem, limit, 1);
  run_path("cuMemAllocAsync", a_async, f_async, limit, 1);
  run_path("cuMemAllocFromPoolAsync(default)", a_pool, f_async, limit, 1);
  run_path("cuMemAllocFromPoolAsync(created)", a_ownpool, f_async, limit, 1);
  run_path("cuArrayCreate_v2", a_array, f_array, limit, 4);
  run_path("cuArray3DCreate_v2", a_array3d, f_array, limit, 4);
  run_path("cuMemCreate", a_vmm, f_vmm, limit, 2 << 20);
  /* through cuGetProcAddress (CUDA 11.3 style) and cuGetProcAddress_v2 (12.x) */
  void *p = NULL;
  if (cuGetProcAddress("cuMemAlloc", &p, 12000, 0) || !p) { printf("PATH gpa FAIL lookup\n"); failures++; }
  else { gpa_alloc = p; run_path("cuGetProcAddress(cuMemAlloc)", a_gpa, f_mem, limit, 1); }
  CUresult (*gpa2)(const char *, void **, int, unsigned long long, int *) = NULL;
  if (cuGetProcAddress("cuGetProcAddress", (void **)&gpa2, 12000, 0) || !gpa2) { printf("PATH gpa2 FAIL lookup\n"); failures++; }
  else {
    int st = -1; p = NULL;
    if (gpa2("cuMemAlloc", &p, 12020, 0, &st) || !p || st != 0) { printf("PATH gpa2 FAIL lookup2\n"); failures++; }
    else { gpa_alloc = p; run_path("cuGetProcAddress_v2(cuMemAlloc)", a_gpa, f_mem, limit, 1); }
  }
  /* RTLD_DEFAULT lookup */
  gpa_alloc = dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
  run_path("dlsym(RTLD_DEFAULT,cuMemAlloc_v2)", a_gpa, f_mem, limit, 1);
  /* mixed paths share one budget */
  Obj a, b, c, d; int before = failures;
  check("mixed", "half by cuMemAlloc", a_mem(limit / 2, &a), 0);
  check("mixed", "quarter by array", a_array(limit / 4, &b), 0);
  check("mixed", "quarter by managed", a_managed(limit / 4, &c), 0);
  check("mixed", "one byte by async", a_async(1, &d), 2);
  f_mem(&a); f_array(&b); f_mem(&c);
  if (failures == before) printf("PATH mixed ok\n");
  printf("PATHS_DONE failures=%d\n", failures);
  return failures != 0;
}

static int cmd_alloc(size_t bytes) {
  setup();
  CUdeviceptr p; CUresult r = cuMemAlloc_v2(&p, bytes);
  printf("ALLOC rc=%d\n", r);
  if (r == 0) cuMemFree_v2(p);
  return 0;
}

static int cmd_hold(size_t bytes, int secs) {
  setup();
  CUdeviceptr p; CUresult r = cuMemAlloc_v2(&p, bytes);
  printf("HELD rc=%d\n", r); fflush(stdout);
  sleep(secs);
  return 0;
}

static int cmd_meminfo(void) {
  setup();
  size_t fr = 0, tot = 0, tm = 0;
  CUdeviceptr p; cuMemAlloc_v2(&p, 1 << 20);
  CUresult r1 = cuMemGetInfo_v2(&fr, &tot), r2 = cuDeviceTotalMem_v2(&tm, 0);
  printf("MEMINFO rc=%d free=%zu total=%zu\n", r1, fr, tot);
  printf("TOTALMEM rc=%d bytes=%zu\n", r2, tm);
  void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (!h) { printf("NVML missing\n"); return 1; }
  NVML_FUNCS(LOAD)
  nvmlDevice_t dev; nvmlMemory_t m; nvmlMemory_v2_t m2; memset(&m2, 0, sizeof m2); m2.version = NVML_MEMORY_V2;
  if (nvmlInit_v2() || nvmlDeviceGetHandleByIndex_v2(0, &dev)) { printf("NVML init failed\n"); return 1; }
  int n1 = nvmlDeviceGetMemoryInfo(dev, &m), n2 = nvmlDeviceGetMemoryInfo_v2(dev, &m2);
  printf("NVML rc=%d total=%llu free=%llu used=%llu\n", n1, m.total, m.free, m.used);
  printf("NVML2 rc=%d total=%llu free=%llu used=%llu\n", n2, m2.total, m2.free, m2.used);
  return 0;
}

/* --- compute share ------------------------------------------------------------------------- */
static int cmd_share(double secs, unsigned blocks, const char *mode) {
  setup();
  double ns_per_block = atof(getenv("HAMI_FAKE_NS_PER_BLOCK") ? getenv("HAMI_FAKE_NS_PER_BLOCK") : "1000");
  double kernel_s = blocks * ns_per_block * 1e-9;
  CUstream s; cuStreamCreate(&s, 0);
  CUgraph g; CUgraphExec ge;
  cuStreamBeginCapture_v2(s, 0);
  cuLaunchKernel(kfn, blocks, 1, 1, 128, 1, 1, 0, s, NULL, NULL);
  cuStreamEndCapture(s, &g);
  cuGraphInstantiateWithFlags(&ge, g, 0);
  CUlaunchConfig cfg; memset(&cfg, 0, sizeof cfg);
  cfg.gridDimX = blocks; cfg.gridDimY = cfg.gridDimZ = 1; cfg.blockDimX = 128; cfg.blockDimY = cfg.blockDimZ = 1; cfg.hStream = s;
  int mixed = strcmp(mode, "mixed") == 0;
  double t0 = now_s(), wstart = t0, busy = 0;
  int w = 0; unsigned long i = 0;
  while (1) {
    int k = mixed ? (int)(i % 4) : 0;
    CUresult r;
    if (k == 0) r = cuLaunchKernel(kfn, blocks, 1, 1, 128, 1, 1, 0, s, NULL, NULL);
    else if (k == 1) r = cuLaunchKernelEx(&cfg, kfn, NULL, NULL);
    else if (k == 2) r = cuLaunchCooperativeKernel(kfn, blocks, 1, 1, 128, 1, 1, 0, s, NULL);
    else r = cuGraphLaunch(ge, s);
    if (r) { printf("launch failed %d\n", r); return 1; }
    cuStreamSynchronize(s);
    i++;
    double t = now_s();
    busy += kernel_s;
    if (t - wstart >= 1.0) {
      printf("WINDOW %d share=%.1f\n", w, 100.0 * busy / (t - wstart)); fflush(stdout);
      w++; wstart = t; busy = 0;
      if (t - t0 >= secs - 0.01) break;
    }
  }
  return 0;
}

/* --- benchmarks: ns per call in batches, percentiles over batch means --------------------- */
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static void report(const char *what, double *v, int n) {
  qsort(v, n, sizeof *v, cmpd);
  printf("BENCH %s p50=%.1f p90=%.1f p99=%.1f min=%.1f ns/op\n", what, v[n / 2], v[n * 9 / 10], v[n * 99 / 100], v[0]);
}

static int cmd_bench(const char *what, int batches, int per) {
  setup();
  double *v = malloc(sizeof(double) * batches);
  /* warm-up: lets the compute controller measure the (tiny) kernels and open the bucket */
  double w0 = now_s();
  while (getenv("BENCH_WARMUP") && now_s() - w0 < atof(getenv("BENCH_WARMUP")))
    for (int j = 0; j < 1000; j++) cuLaunchKernel(kfn, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
  /* count-based warm-up, for instruction counting (the same number of calls in every run) */
  for (long j = 0; getenv("BENCH_WARMUP_N") && j < atol(getenv("BENCH_WARMUP_N")); j++)
    cuLaunchKernel(kfn, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
  for (int b = 0; b < batches; b++) {
    double t = now_s();
    if (!strcmp(what, "launch")) {
      for (int j = 0; j < per; j++) cuLaunchKernel(kfn, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
    } else {
      for (int j = 0; j < per; j++) { CUdeviceptr p; cuMemAlloc_v2(&p, 4096); cuMemFree_v2(p); }
    }
    v[b] = (now_s() - t) * 1e9 / per;
  }
  report(what, v, batches);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: cutest paths|alloc|hold|meminfo|share|bench ...\n"); return 2; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *c = argv[1];
  if (!strcmp(c, "paths")) return cmd_paths(strtoull(argv[2], 0, 0));
  if (!strcmp(c, "alloc")) return cmd_alloc(strtoull(argv[2], 0, 0));
  if (!strcmp(c, "hold")) return cmd_hold(strtoull(argv[2], 0, 0), atoi(argv[3]));
  if (!strcmp(c, "meminfo")) return cmd_meminfo();
  if (!strcmp(c, "share")) return cmd_share(atof(argv[2]), atoi(argv[3]), argc > 4 ? argv[4] : "kernel");
  if (!strcmp(c, "bench")) return cmd_bench(argv[2], atoi(argv[3]), atoi(argv[4]));
  if (!strcmp(c, "init")) {
    double t = now_s(); load(); CUresult r = cuInit(0); CUdeviceptr p; CUdevice d; CUcontext ctx;
    cuDeviceGet(&d, 0); cuDevicePrimaryCtxRetain(&ctx, d); cuCtxSetCurrent(ctx);
    r |= cuMemAlloc_v2(&p, 4096);
    printf("INIT rc=%d us=%.1f\n", r, (now_s() - t) * 1e6);
    return 0;
  }
  fprintf(stderr, "unknown command %s\n", c);
  return 2;
}
