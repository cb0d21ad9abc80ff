/* load_pin.c — page-locks batch buffers when a CUDA runtime is present, so copies to the GPU
 * can run asynchronously at full bandwidth. libcudart is looked up at run time (dlopen): softpipe
 * neither builds nor links against CUDA, and on a machine without it this does nothing. */
#define _GNU_SOURCE
#include "load_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

typedef int (*host_register_fn)(void *ptr, size_t size, unsigned int flags);
typedef int (*host_unregister_fn)(void *ptr);

static host_register_fn cuda_register;
static host_unregister_fn cuda_unregister;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load_cudart(void) {
    if (getenv("SOFTPIPE_NO_PIN")) return;
    static const char *names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                  "libcudart.so.11.0"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        host_register_fn r = (host_register_fn)dlsym(h, "cudaHostRegister");
        host_unregister_fn u = (host_unregister_fn)dlsym(h, "cudaHostUnregister");
        if (r && u) {
            cuda_register = r;
            cuda_unregister = u;
            return; /* keep the handle open for the process's life */
        }
        dlclose(h);
    }
}

int sp__pin(void *ptr, size_t size) {
    pthread_once(&once, load_cudart);
    if (!cuda_register || !ptr || !size) return 0;
    return cuda_register(ptr, size, 0 /* cudaHostRegisterDefault */) == 0;
}

void sp__unpin(void *ptr) {
    if (cuda_unregister && ptr) cuda_unregister(ptr);
}
