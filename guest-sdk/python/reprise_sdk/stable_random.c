/* Loaded (LD_PRELOAD) into componentize-py while it builds a Python guest:
 * getrandom(2) returns fixed bytes instead of the kernel's — the same for
 * every call, whatever the order the build's threads call it in.
 * componentize-py pre-initializes CPython at build time, and CPython draws
 * its string hash secret there; with the kernel's bytes, two builds of the
 * same source iterate a set of strings in different orders and cannot
 * replay each other's histories. The guest's randomness at run time is the
 * host's journaled WASI random, never this. */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/types.h>

ssize_t getrandom(void *buffer, size_t length, unsigned int flags) {
    (void)flags;
    unsigned long long state = 0x9E3779B97F4A7C15ULL;
    unsigned char *out = buffer;
    for (size_t i = 0; i < length; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = (unsigned char)state;
    }
    return (ssize_t)length;
}
