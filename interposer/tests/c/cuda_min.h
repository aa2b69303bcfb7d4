/* Minimal CUDA driver / NVML declarations for the hami-rs interposer tests.
 * Written from the public API signatures; only what the tests use. */
#ifndef HAMI_CUDA_MIN_H
#define HAMI_CUDA_MIN_H
#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream, *CUarray, *CUmemoryPool, *CUgraph,
    *CUgraphExec;
typedef uint64_t CUmemGenericAllocationHandle;

typedef struct { size_t Width, Height; unsigned Format, NumChannels; } CUDA_ARRAY_DESCRIPTOR;
typedef struct { size_t Width, Height, Depth; unsigned Format, NumChannels, Flags; } CUDA_ARRAY3D_DESCRIPTOR;
typedef struct { int type; int id; } CUmemLocation;
typedef struct {
  int type; int requestedHandleTypes; CUmemLocation location; void *win32HandleMetaData;
  struct { unsigned char compressionType, gpuDirectRDMACapable; unsigned short usage; unsigned char reserved[4]; } allocFlags;
} CUmemAllocationProp;
typedef struct {
  int allocType; int handleTypes; CUmemLocation location; void *win32SecurityAttributes;
  size_t maxSize; unsigned short usage; unsigned char reserved[54];
} CUmemPoolProps;
typedef struct {
  unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
  CUstream hStream; void *attrs; unsigned numAttrs;
} CUlaunchConfig;

#define CU_FUNCS(X) \
  X(CUresult, cuInit, (unsigned)) \
  X(CUresult, cuDeviceGet, (CUdevice *, int)) \
  X(CUresult, cuDeviceGetCount, (int *)) \
  X(CUresult, cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice)) \
  X(CUresult, cuCtxSetCurrent, (CUcontext)) \
  X(CUresult, cuCtxSynchronize, (void)) \
  X(CUresult, cuModuleLoadData, (CUmodule *, const void *)) \
  X(CUresult, cuModuleGetFunction, (CUfunction *, CUmodule, const char *)) \
  X(CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t)) \
  X(CUresult, cuMemAllocPitch_v2, (CUdeviceptr *, size_t *, size_t, size_t, unsigned)) \
  X(CUresult, cuMemAllocManaged, (CUdeviceptr *, size_t, unsigned)) \
  X(CUresult, cuMemAllocAsync, (CUdeviceptr *, size_t, CUstream)) \
  X(CUresult, cuMemAllocFromPoolAsync, (CUdeviceptr *, size_t, CUmemoryPool, CUstream)) \
  X(CUresult, cuMemFree_v2, (CUdeviceptr)) \
  X(CUresult, cuMemFreeAsync, (CUdeviceptr, CUstream)) \
  X(CUresult, cuDeviceGetDefaultMemPool, (CUmemoryPool *, CUdevice)) \
  X(CUresult, cuMemPoolCreate, (CUmemoryPool *, const CUmemPoolProps *)) \
  X(CUresult, cuArrayCreate_v2, (CUarray *, const CUDA_ARRAY_DESCRIPTOR *)) \
  X(CUresult, cuArray3DCreate_v2, (CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *)) \
  X(CUresult, cuArrayDestroy, (CUarray)) \
  X(CUresult, cuMemCreate, (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long)) \
  X(CUresult, cuMemRelease, (CUmemGenericAllocationHandle)) \
  X(CUresult, cuMemAddressReserve, (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long)) \
  X(CUresult, cuMemMap, (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long)) \
  X(CUresult, cuMemUnmap, (CUdeviceptr, size_t)) \
  X(CUresult, cuMemGetInfo_v2, (size_t *, size_t *)) \
  X(CUresult, cuDeviceTotalMem_v2, (size_t *, CUdevice)) \
  X(CUresult, cuStreamCreate, (CUstream *, unsigned)) \
  X(CUresult, cuStreamSynchronize, (CUstream)) \
  X(CUresult, cuStreamBeginCapture_v2, (CUstream, int)) \
  X(CUresult, cuStreamEndCapture, (CUstream, CUgraph *)) \
  X(CUresult, cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long)) \
  X(CUresult, cuGraphLaunch, (CUgraphExec, CUstream)) \
  X(CUresult, cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **)) \
  X(CUresult, cuLaunchKernelEx, (const CUlaunchConfig *, CUfunction, void **, void **)) \
  X(CUresult, cuLaunchCooperativeKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **)) \
  X(CUresult, cuGetProcAddress, (const char *, void **, int, unsigned long long)) \
  X(CUresult, cuGetProcAddress_v2, (const char *, void **, int, unsigned long long, int *))

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
#define NVML_MEMORY_V2 ((unsigned)(sizeof(nvmlMemory_v2_t) | (2u << 24)))
typedef void *nvmlDevice_t;

#define NVML_FUNCS(X) \
  X(int, nvmlInit_v2, (void)) \
  X(int, nvmlDeviceGetHandleByIndex_v2, (unsigned, nvmlDevice_t *)) \
  X(int, nvmlDeviceGetMemoryInfo, (nvmlDevice_t, nvmlMemory_t *)) \
  X(int, nvmlDeviceGetMemoryInfo_v2, (nvmlDevice_t, nvmlMemory_v2_t *))

#endif
