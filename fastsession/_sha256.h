/* One SHA-256 compression (FIPS 180-4, 6.2.2), for _ids_c's stored names: a
 * session's file and key names are SHA-256 of its id, one block per request.
 * With the x86 SHA extensions the 64 rounds take 32 instructions; portable C
 * needs about 3,000 (callgrind). The CPU is asked once (CPUID); without the
 * extensions, or off x86, the portable rounds are used and
 * fastsession_has_sha_ni() says 0. */
#ifndef FASTSESSION_SHA256_H
#define FASTSESSION_SHA256_H

#include <stdint.h>

/* The portable compression (FIPS 180-4, 6.2.2), for CPUs without the extensions (and under valgrind). The
 * rounds are written sixteen at a time with the working variables renamed from round to round instead of moved,
 * the schedule is kept as a ring of 16 words, Ch and Maj take their three-operation forms, and each sigma
 * nests its rotations (ROTR(x ^ ROTR(x ^ ROTR(x, 9), 11), 2) is ROTR 2 ^ 13 ^ 22 of x, a copy of x fewer):
 * about 3,000 instructions a block (callgrind) where a plain loop of 64 rounds took 4,300. */
#define FASTSESSION_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define FASTSESSION_BIG_S0(x) FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR(x, 9), 11), 2)
#define FASTSESSION_BIG_S1(x) FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR(x, 14), 5), 6)
#define FASTSESSION_SMALL_S0(x) (FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR(x, 11), 7) ^ ((x) >> 3))
#define FASTSESSION_SMALL_S1(x) (FASTSESSION_ROTR((x) ^ FASTSESSION_ROTR(x, 2), 17) ^ ((x) >> 10))
/* Round t + i (t a multiple of 16, i < 16: W's ring slot) with the variables a..h passed as they are named in
 * that round: only d and h change. */
#define FASTSESSION_ROUND(a, b, c, d, e, f, g, h, t, i)                                            \
    do {                                                                                          \
        uint32_t t1_ = (h) + FASTSESSION_BIG_S1(e) + ((g) ^ ((e) & ((f) ^ (g)))) + k[(t) + (i)] + w[i]; \
        (d) += t1_;                                                                               \
        (h) = t1_ + FASTSESSION_BIG_S0(a) + (((a) & (b)) | ((c) & ((a) | (b))));                   \
    } while (0)
/* W[t] for t >= 16, into the ring slot i = t mod 16, which held W[t - 16]. */
#define FASTSESSION_NEXT_W(i)                                                                       \
    (w[i] += FASTSESSION_SMALL_S1(w[((i) + 14) & 15]) + w[((i) + 9) & 15] + FASTSESSION_SMALL_S0(w[((i) + 1) & 15]))

static void fastsession_sha256_block_portable(uint32_t state[8], const unsigned char block[64], const uint32_t k[64])
{
    uint32_t w[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    int t;

    for (t = 0; t < 16; t++)
        w[t] = ((uint32_t)block[4 * t] << 24) | ((uint32_t)block[4 * t + 1] << 16) |
               ((uint32_t)block[4 * t + 2] << 8) | (uint32_t)block[4 * t + 3];
    /* Sixteen rounds a turn, so that every index into the ring is a constant. */
    for (t = 0; t < 64; t += 16) {
        if (t) {
            FASTSESSION_NEXT_W(0);
            FASTSESSION_NEXT_W(1);
            FASTSESSION_NEXT_W(2);
            FASTSESSION_NEXT_W(3);
            FASTSESSION_NEXT_W(4);
            FASTSESSION_NEXT_W(5);
            FASTSESSION_NEXT_W(6);
            FASTSESSION_NEXT_W(7);
            FASTSESSION_NEXT_W(8);
            FASTSESSION_NEXT_W(9);
            FASTSESSION_NEXT_W(10);
            FASTSESSION_NEXT_W(11);
            FASTSESSION_NEXT_W(12);
            FASTSESSION_NEXT_W(13);
            FASTSESSION_NEXT_W(14);
            FASTSESSION_NEXT_W(15);
        }
        FASTSESSION_ROUND(a, b, c, d, e, f, g, h, t, 0);
        FASTSESSION_ROUND(h, a, b, c, d, e, f, g, t, 1);
        FASTSESSION_ROUND(g, h, a, b, c, d, e, f, t, 2);
        FASTSESSION_ROUND(f, g, h, a, b, c, d, e, t, 3);
        FASTSESSION_ROUND(e, f, g, h, a, b, c, d, t, 4);
        FASTSESSION_ROUND(d, e, f, g, h, a, b, c, t, 5);
        FASTSESSION_ROUND(c, d, e, f, g, h, a, b, t, 6);
        FASTSESSION_ROUND(b, c, d, e, f, g, h, a, t, 7);
        FASTSESSION_ROUND(a, b, c, d, e, f, g, h, t, 8);
        FASTSESSION_ROUND(h, a, b, c, d, e, f, g, t, 9);
        FASTSESSION_ROUND(g, h, a, b, c, d, e, f, t, 10);
        FASTSESSION_ROUND(f, g, h, a, b, c, d, e, t, 11);
        FASTSESSION_ROUND(e, f, g, h, a, b, c, d, t, 12);
        FASTSESSION_ROUND(d, e, f, g, h, a, b, c, t, 13);
        FASTSESSION_ROUND(c, d, e, f, g, h, a, b, t, 14);
        FASTSESSION_ROUND(b, c, d, e, f, g, h, a, t, 15);
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* SHA (leaf 7, EBX bit 29), with SSSE3 and SSE4.1 (leaf 1, ECX bits 9 and 19) for the shuffles and blends. */
static int fastsession_has_sha_ni(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))
        return 0;
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1u;
}

/* state: a..h, updated in place; block: 64 bytes; k: the 64 round constants. */
__attribute__((target("sha,sse4.1,ssse3")))
static void fastsession_sha256_block_ni(uint32_t state[8], const unsigned char block[64], const uint32_t k[64])
{
    const __m128i big_endian = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i w[16];
    __m128i abef, cdgh, abef_before, cdgh_before, dcba, hgfe, wk;
    int i;

    /* The instructions keep the state as ABEF and CDGH (A in the top lane). */
    dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* lanes b a d c */
    hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* lanes h g f e */
    abef = _mm_alignr_epi8(dcba, hgfe, 8);
    cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);
    abef_before = abef;
    cdgh_before = cdgh;

    for (i = 0; i < 4; i++)
        w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * i)), big_endian);
    /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four words at a time. */
    for (i = 4; i < 16; i++)
        w[i] = _mm_sha256msg2_epu32(
            _mm_add_epi32(_mm_sha256msg1_epu32(w[i - 4], w[i - 3]), _mm_alignr_epi8(w[i - 1], w[i - 2], 4)), w[i - 1]);
    /* Two rounds per instruction, on the low two words of W + K; the old ABEF becomes CDGH. */
    for (i = 0; i < 16; i++) {
        wk = _mm_add_epi32(w[i], _mm_loadu_si128((const __m128i *)&k[4 * i]));
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);

    dcba = _mm_shuffle_epi32(abef, 0x1B); /* lanes a b e f */
    hgfe = _mm_shuffle_epi32(cdgh, 0xB1); /* lanes g h c d */
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(dcba, hgfe, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(hgfe, dcba, 8));
}

#else

static int fastsession_has_sha_ni(void) { return 0; }

static void fastsession_sha256_block_ni(uint32_t state[8], const unsigned char block[64], const uint32_t k[64])
{
    (void)state;
    (void)block;
    (void)k;
}

#endif
#endif
