/* One SHA-256 compression (FIPS 180-4, 6.2.2) with the x86 SHA extensions,
 * for _ids_c's stored names: a session's file and key names are SHA-256 of
 * its id, one block per request. The extensions do 64 rounds in 32
 * instructions; portable C needs about 4,000 (callgrind). The CPU is asked
 * once (CPUID); without the extensions, or off x86, _ids_c's portable rounds
 * are used and fastsession_has_sha_ni() says 0. */
#ifndef FASTSESSION_SHA256_H
#define FASTSESSION_SHA256_H

#include <stdint.h>

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
