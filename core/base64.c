/*
 * base64.c -- unpadded base64, the encoding Matrix uses for keys,
 * signatures, hashes and event IDs ("Unpadded Base64" in the spec's
 * appendices).  libsodium encodes; decoding accepts padded input too, as
 * the spec asks of receivers.
 */
#include "core/core.h"

#include <string.h>

size_t ax_b64_encode(char *out, const uint8_t *in, size_t n, bool urlsafe)
{
    int variant = urlsafe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    sodium_bin2base64(out, AX_B64_LEN(n) + 1, in, n, variant);
    return AX_B64_LEN(n);
}

/* Decoding is our own: libsodium rejects non-zero bits after the last full
 * byte, but the spec's own test seed ("...XA1") has them, and every other
 * implementation ignores them. */
int ax_b64_decode(uint8_t *out, size_t cap, size_t *outlen, const char *in, size_t len, bool urlsafe)
{
    while (len > 0 && in[len - 1] == '=')
        --len;
    if (len % 4 == 1)
        return AX_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return AX_EINVAL;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == (urlsafe ? '-' : '+'))
            v = 62;
        else if (c == (urlsafe ? '_' : '/'))
            v = 63;
        else
            return AX_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    *outlen = n;
    return 0;
}
