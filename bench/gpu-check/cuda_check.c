/* A small CUDA program that needs nothing but the driver farm injects: it dlopens
 * libcuda.so.1 (the driver API; no CUDA toolkit, no nvcc), lists the devices, and adds two
 * vectors on each with a kernel given as PTX, JIT-compiled by the driver.
 * Prints one line per device and "vector add: ok" when every element is right.
 * Exit: 0 ok, 2 no libcuda, 3 a CUDA call failed, 4 wrong result.
 * Build: gcc -O2 -o cuda_check cuda_check.c -ldl   (bench/gpu --check does it) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef unsigned long long CUdeviceptr;

static const char PTX[] =
    ".version 7.0\n"
    ".target sm_50\n"
    ".address_size 64\n"
    ".visible .entry add(.param .u64 a, .param .u64 b, .param .u64 c, .param .u32 n)\n"
    "{\n"
    "  .reg .pred p;\n"
    "  .reg .b32 r<5>;\n"
    "  .reg .b64 rd<11>;\n"
    "  .reg .f32 f<4>;\n"
    "  ld.param.u64 rd1, [a];\n"
    "  ld.param.u64 rd2, [b];\n"
    "  ld.param.u64 rd3, [c];\n"
    "  ld.param.u32 r1, [n];\n"
    "  mov.u32 r2, %ctaid.x;\n"
    "  mov.u32 r3, %ntid.x;\n"
    "  mov.u32 r4, %tid.x;\n"
    "  mad.lo.s32 r2, r2, r3, r4;\n"
    "  setp.ge.u32 p, r2, r1;\n"
    "  @p bra DONE;\n"
    "  cvta.to.global.u64 rd4, rd1;\n"
    "  cvta.to.global.u64 rd5, rd2;\n"
    "  cvta.to.global.u64 rd6, rd3;\n"
    "  mul.wide.u32 rd7, r2, 4;\n"
    "  add.s64 rd8, rd4, rd7;\n"
    "  add.s64 rd9, rd5, rd7;\n"
    "  add.s64 rd10, rd6, rd7;\n"
    "  ld.global.f32 f1, [rd8];\n"
    "  ld.global.f32 f2, [rd9];\n"
    "  add.f32 f3, f1, f2;\n"
    "  st.global.f32 [rd10], f3;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n";

#define N 4096

static void *lib;

static void *sym(const char *name) {
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "libcuda.so.1 has no %s\n", name);
        exit(3);
    }
    return f;
}

#define CHECK(call)                                                                  \
    do {                                                                             \
        CUresult rc_ = (call);                                                       \
        if (rc_ != 0) {                                                              \
            fprintf(stderr, "%s failed: CUresult %d\n", #call, rc_);                 \
            exit(3);                                                                 \
        }                                                                            \
    } while (0)

int main(void) {
    lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "no libcuda.so.1: %s\n", dlerror());
        return 2;
    }
    CUresult (*cuInit)(unsigned) = sym("cuInit");
    CUresult (*cuDriverGetVersion)(int *) = sym("cuDriverGetVersion");
    CUresult (*cuDeviceGetCount)(int *) = sym("cuDeviceGetCount");
    CUresult (*cuDeviceGet)(CUdevice *, int) = sym("cuDeviceGet");
    CUresult (*cuDeviceGetName)(char *, int, CUdevice) = sym("cuDeviceGetName");
    CUresult (*cuDeviceTotalMem)(size_t *, CUdevice) = sym("cuDeviceTotalMem_v2");
    CUresult (*cuCtxCreate)(CUcontext *, unsigned, CUdevice) = sym("cuCtxCreate_v2");
    CUresult (*cuCtxDestroy)(CUcontext) = sym("cuCtxDestroy_v2");
    CUresult (*cuModuleLoadData)(CUmodule *, const void *) = sym("cuModuleLoadData");
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *) =
        sym("cuModuleGetFunction");
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t) = sym("cuMemAlloc_v2");
    CUresult (*cuMemFree)(CUdeviceptr) = sym("cuMemFree_v2");
    CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t) = sym("cuMemcpyHtoD_v2");
    CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t) = sym("cuMemcpyDtoH_v2");
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                               unsigned, unsigned, void *, void **, void **) =
        sym("cuLaunchKernel");
    CUresult (*cuCtxSynchronize)(void) = sym("cuCtxSynchronize");

    CHECK(cuInit(0));
    int version = 0, count = 0;
    CHECK(cuDriverGetVersion(&version));
    CHECK(cuDeviceGetCount(&count));
    printf("cuda driver API %d.%d, devices=%d\n", version / 1000, (version % 1000) / 10, count);
    static float a[N], b[N], c[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)i;
        b[i] = (float)(2 * i + 1);
    }
    for (int d = 0; d < count; d++) {
        CUdevice dev;
        char name[256];
        size_t mem = 0;
        CHECK(cuDeviceGet(&dev, d));
        CHECK(cuDeviceGetName(name, sizeof name, dev));
        CHECK(cuDeviceTotalMem(&mem, dev));
        printf("device %d: %s, %zu MiB\n", d, name, mem >> 20);
        CUcontext ctx;
        CUmodule module;
        CUfunction add;
        CUdeviceptr da, db, dc;
        CHECK(cuCtxCreate(&ctx, 0, dev));
        CHECK(cuModuleLoadData(&module, PTX));
        CHECK(cuModuleGetFunction(&add, module, "add"));
        CHECK(cuMemAlloc(&da, sizeof a));
        CHECK(cuMemAlloc(&db, sizeof b));
        CHECK(cuMemAlloc(&dc, sizeof c));
        CHECK(cuMemcpyHtoD(da, a, sizeof a));
        CHECK(cuMemcpyHtoD(db, b, sizeof b));
        unsigned n = N;
        void *args[] = {&da, &db, &dc, &n};
        CHECK(cuLaunchKernel(add, (N + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, args, NULL));
        CHECK(cuCtxSynchronize());
        CHECK(cuMemcpyDtoH(c, dc, sizeof c));
        for (int i = 0; i < N; i++) {
            if (c[i] != a[i] + b[i]) {
                fprintf(stderr, "device %d: c[%d] = %f, want %f\n", d, i, c[i], a[i] + b[i]);
                return 4;
            }
        }
        cuMemFree(da);
        cuMemFree(db);
        cuMemFree(dc);
        cuCtxDestroy(ctx);
    }
    printf("vector add: ok\n");
    return 0;
}
