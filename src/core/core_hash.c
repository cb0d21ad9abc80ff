/* core_hash.c — CRC-32C (SSE4.2 instruction with a table fallback), XXH3 (libxxhash) and
 * SHA-256 (OpenSSL EVP, which uses SHA-NI where the CPU has it). */
#include "core_internal.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- CRC-32C, reflected polynomial 0x82F63B78 */

static uint32_t crc_table[8][256];
static int crc_table_ready;

static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    __atomic_store_n(&crc_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE)) crc_table_init();
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#include <pthread.h>

/* The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one
 * dependent stream runs at a third of the possible speed. Long buffers are therefore cut into
 * three lanes of LANE bytes, hashed in parallel, and combined with
 *   crc(r, A B C) = shift(crc(r, A), 2 LANE) ^ shift(crc(0, B), LANE) ^ crc(0, C)
 * where shift(r, n) = r * x^(8n) mod P is linear in r, so it is four table lookups per shift
 * (tables built once from a carry-less multiply modulo P). */
#define LANE 4096

static uint32_t shift1[4][256], shift2[4][256]; /* by LANE and by 2*LANE bytes */
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

/* a * b modulo P, in the reflected representation (bit 31 is the coefficient of x^0). */
static uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    if (a == 0) return 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ 0x82F63B78u : b >> 1;
    }
    return p;
}

static void shift_init(void) {
    uint32_t xn = 1u << 31; /* x^0 */
    for (int i = 0; i < 8 * LANE; i++)
        xn = multmodp(xn, 1u << 30); /* times x */
    uint32_t x2n = multmodp(xn, xn);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) {
            shift1[k][b] = multmodp(b << (8 * k), xn);
            shift2[k][b] = multmodp(b << (8 * k), x2n);
        }
}

static inline uint32_t shift_by(const uint32_t t[4][256], uint32_t r) {
    return t[0][r & 0xff] ^ t[1][(r >> 8) & 0xff] ^ t[2][(r >> 16) & 0xff] ^ t[3][r >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    if (n >= 3 * LANE) {
        pthread_once(&shift_once, shift_init);
        while (n >= 3 * LANE) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *q = p;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t a, b, d;
                memcpy(&a, q + i, 8);
                memcpy(&b, q + LANE + i, 8);
                memcpy(&d, q + 2 * LANE + i, 8);
                c = _mm_crc32_u64(c, a);
                c1 = _mm_crc32_u64(c1, b);
                c2 = _mm_crc32_u64(c2, d);
            }
            c = shift_by(shift2, (uint32_t)c) ^ shift_by(shift1, (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * LANE;
            n -= 3 * LANE;
        }
    }
    while (n >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c = _mm_crc32_u64(c, a);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

/* Long buffers on CPUs with VPCLMULQDQ: carry-less multiplication folds 256 bytes per step into
 * four 512-bit accumulators, whose value modulo P is then finished with the crc32 instruction.
 * Folding a 128-bit lane (L = its first 8 bytes, H = the next 8) forward by D bits multiplies L by
 * x^(D+32) and H by x^(D-32) mod P (the -32 and the shift by one absorb the reflected bit order);
 * the constants are computed once from multmodp. */
static uint64_t fold_k[8][2]; /* [distance index][lo, hi]: 2048, 1536, 1024, 512, 384, 256, 128 */
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static uint32_t xpow_mod(unsigned n) { /* x^n mod P, reflected */
    uint32_t r = 1u << 31;
    for (unsigned i = 0; i < n; i++)
        r = multmodp(r, 1u << 30);
    return r;
}

static void fold_init(void) {
    static const unsigned dist[7] = {2048, 1536, 1024, 512, 384, 256, 128};
    for (int i = 0; i < 7; i++) {
        fold_k[i][0] = (uint64_t)xpow_mod(dist[i] + 32) << 1;
        fold_k[i][1] = (uint64_t)xpow_mod(dist[i] - 32) << 1;
    }
}

#define SP__VPCLMUL_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))

SP__VPCLMUL_TARGET static inline __m512i fold512(__m512i x, __m512i k, __m512i d) {
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), d, 0x96);
}

SP__VPCLMUL_TARGET static inline __m128i fold128(__m128i x, int ki) {
    __m128i k = _mm_set_epi64x((long long)fold_k[ki][1], (long long)fold_k[ki][0]);
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Raw (non-inverted) register in and out; n >= 256. */
SP__VPCLMUL_TARGET static uint32_t crc32c_vpclmul(uint32_t crc, const uint8_t *p, size_t n) {
    pthread_once(&fold_once, fold_init);
#define K512(i)                                                                                    \
    _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[i][1], (long long)fold_k[i][0]))
    __m512i x0 = _mm512_loadu_si512((const void *)p),
            x1 = _mm512_loadu_si512((const void *)(p + 64)),
            x2 = _mm512_loadu_si512((const void *)(p + 128)),
            x3 = _mm512_loadu_si512((const void *)(p + 192));
    x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)crc)));
    p += 256;
    n -= 256;
    __m512i k = K512(0);
    while (n >= 256) {
        x0 = fold512(x0, k, _mm512_loadu_si512((const void *)p));
        x1 = fold512(x1, k, _mm512_loadu_si512((const void *)(p + 64)));
        x2 = fold512(x2, k, _mm512_loadu_si512((const void *)(p + 128)));
        x3 = fold512(x3, k, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        n -= 256;
    }
    x0 = fold512(x0, K512(1), x3);
    x0 = _mm512_xor_si512(x0, fold512(x1, K512(2), _mm512_setzero_si512()));
    x0 = _mm512_xor_si512(x0, fold512(x2, K512(3), _mm512_setzero_si512()));
#undef K512
    __m128i t = _mm_xor_si128(fold128(_mm512_extracti32x4_epi32(x0, 0), 4),
                              fold128(_mm512_extracti32x4_epi32(x0, 1), 5));
    t = _mm_xor_si128(t, fold128(_mm512_extracti32x4_epi32(x0, 2), 6));
    t = _mm_xor_si128(t, _mm512_extracti32x4_epi32(x0, 3));
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(t));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(t, 1));
    while (n >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c = _mm_crc32_u64(c, a);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

static int have_sse42 = -1, have_vpclmul = -1;

uint32_t sp_crc32c(uint32_t crc, const void *buf, size_t len) {
    crc = ~crc;
#if defined(__x86_64__)
    int h = __atomic_load_n(&have_sse42, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        int v = h && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("pclmul") &&
                !getenv("SOFTPIPE_NO_VPCLMUL");
        __atomic_store_n(&have_vpclmul, v, __ATOMIC_RELAXED);
        __atomic_store_n(&have_sse42, h, __ATOMIC_RELAXED);
    }
    if (h && len >= 1024 && __atomic_load_n(&have_vpclmul, __ATOMIC_RELAXED))
        return ~crc32c_vpclmul(crc, buf, len);
    if (h) return ~crc32c_hw(crc, buf, len);
#endif
    return ~crc32c_sw(crc, buf, len);
}

/* For tests: the portable path, whatever the CPU. */
uint32_t sp__crc32c_portable(uint32_t crc, const void *buf, size_t len);
uint32_t sp__crc32c_portable(uint32_t crc, const void *buf, size_t len) {
    return ~crc32c_sw(~crc, buf, len);
}

/* ---- XXH3 */

uint64_t sp__xxh3(const void *p, size_t n) {
    return (uint64_t)XXH3_64bits(p, n);
}

/* ---- SHA-256 */

sp_status sp__sha256_init(sp__sha256 *h) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return sp__fail(SP_ENOMEM, "out of memory creating a SHA-256 context");
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return sp__fail(SP_EINTERNAL, "OpenSSL: SHA-256 init failed");
    }
    h->ctx = ctx;
    return SP_OK;
}

void sp__sha256_update(sp__sha256 *h, const void *p, size_t n) {
    if (n) EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, p, n);
}

void sp__sha256_final(sp__sha256 *h, char hex[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, md, &mdlen);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    sp__sha256_free(h);
}

void sp__sha256_free(sp__sha256 *h) {
    EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
    h->ctx = NULL;
}

/* ---- misc */

double sp__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sp__ncpu(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
