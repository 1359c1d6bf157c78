/* Streaming inflater for gzip and deflate bodies over zlib, and the Content-Encoding names.
 * No sockets, no engine, no allocation of ours: the caller hands in both buffers and zlib's
 * allocator. Every body may arrive in pieces of any size, down to one byte, and the output
 * may run out at any byte: the state between calls lives in struct qf_inflate. */
#include "parser/inflate.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qfetch.h"

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int token_is(const char *s, size_t len, const char *name)
{
    size_t i;
    if (len != strlen(name))
        return 0;
    for (i = 0; i < len; i++) {
        if (lower((unsigned char)s[i]) != name[i])
            return 0;
    }
    return 1;
}

/* Codings apply in the order listed; we undo exactly one. identity changes nothing and empty
 * list elements are allowed (RFC 9110 5.6.1). */
enum qf_coding qf_inflate_coding(const char *value, size_t len)
{
    enum qf_coding found = QF_CODING_IDENTITY;
    size_t i = 0;

    while (i < len) {
        size_t start, end;
        while (i < len && (value[i] == ' ' || value[i] == '\t'))
            i++;
        start = i;
        while (i < len && value[i] != ',')
            i++;
        end = i++;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end == start || token_is(value + start, end - start, "identity"))
            continue;
        if (found != QF_CODING_IDENTITY)
            return QF_CODING_UNKNOWN;
        if (token_is(value + start, end - start, "gzip") ||
            token_is(value + start, end - start, "x-gzip"))
            found = QF_CODING_GZIP;
        else if (token_is(value + start, end - start, "deflate"))
            found = QF_CODING_DEFLATE;
        else
            return QF_CODING_UNKNOWN;
    }
    return found;
}

void qf_inflate_init(struct qf_inflate *z, alloc_func alloc, free_func release, void *opaque)
{
    memset(z, 0, sizeof(*z));
    z->zs.zalloc = alloc;
    z->zs.zfree = release;
    z->zs.opaque = opaque;
}

static const char *name(const struct qf_inflate *z)
{
    return z->coding == QF_CODING_GZIP ? "gzip" : "deflate";
}

__attribute__((format(printf, 3, 4))) static int fail(struct qf_inflate *z, int err,
                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(z->msg, sizeof(z->msg), fmt, ap);
    va_end(ap);
    return z->err = err;
}

/* gzip: 32 + 15 lets zlib also take a zlib-wrapped stream sent as gzip, as curl does.
 * deflate starts as zlib-wrapped; the first two bytes may switch it to raw. The window size
 * is the same either way, so a reset keeps zlib's window instead of freeing it. */
int qf_inflate_begin(struct qf_inflate *z, enum qf_coding coding, uint64_t out_max)
{
    int wbits = coding == QF_CODING_GZIP ? 32 + MAX_WBITS : MAX_WBITS;
    int rc = z->ready ? inflateReset2(&z->zs, wbits) : inflateInit2(&z->zs, wbits);

    z->coding = coding;
    z->sniffed = coding != QF_CODING_DEFLATE;
    z->ended = z->pending = z->err = 0;
    z->nstash = z->stash_off = 0;
    z->in_total = z->out_total = 0;
    z->out_max = out_max;
    z->msg[0] = '\0';
    if (rc == Z_OK) {
        z->ready = 1;
        return 0;
    }
    if (!z->ready && rc == Z_MEM_ERROR)
        return fail(z, QF_ENOMEM, "out of memory for the %s inflater", name(z));
    return fail(z, QF_EPROTO, "%s inflater: %s", name(z), z->zs.msg ? z->zs.msg : "bad state");
}

/* RFC 1950 2.2: compression method 8, a window of at most 32 KiB and a header check that is a
 * multiple of 31. A raw stream starts like that only by a rare accident. */
static int zlib_header(const unsigned char *b)
{
    return (b[0] & 0x0f) == 8 && (b[0] >> 4) <= 7 && ((unsigned)b[0] << 8 | b[1]) % 31 == 0;
}

/* Deflate as sent: the first two bytes decide between zlib-wrapped and raw, and stay stashed
 * until inflate has taken them. Returns 0 once decided, 1 while fewer than two have come. */
static int sniff(struct qf_inflate *z, const char **in, size_t *in_len)
{
    while (z->nstash < 2 && *in_len > 0) {
        z->stash[z->nstash++] = (unsigned char)**in;
        ++*in;
        --*in_len;
    }
    if (z->nstash < 2)
        return 1;
    z->sniffed = 1;
    if (!zlib_header(z->stash) && inflateReset2(&z->zs, -MAX_WBITS) != Z_OK)
        return fail(z, QF_EPROTO, "deflate inflater: cannot switch to raw");
    return 0;
}

/* After each inflate() call, so a bomb is refused after at most one output buffer more than
 * the free allowance. in_total counts what zlib took, which is at least what it has turned
 * into output: the ratio is never overstated. */
static int check_caps(struct qf_inflate *z)
{
    if (z->out_total > z->out_max) {
        if (z->out_max % (1u << 20) == 0)
            return fail(z, QF_EBODY, "response body larger than %llu MiB once inflated",
                        (unsigned long long)(z->out_max >> 20));
        return fail(z, QF_EBODY, "response body larger than %llu bytes once inflated",
                    (unsigned long long)z->out_max);
    }
    if (z->out_total > QF_INFLATE_RATIO_FREE && z->out_total > z->in_total * QF_INFLATE_RATIO_MAX)
        return fail(z, QF_EBODY,
                    "%s body inflates more than %d:1 (%llu bytes from %llu): refused as a "
                    "decompression bomb",
                    name(z), QF_INFLATE_RATIO_MAX, (unsigned long long)z->out_total,
                    (unsigned long long)z->in_total);
    return 0;
}

int qf_inflate_feed(struct qf_inflate *z, const char **in, size_t *in_len, char *out, size_t cap,
                    size_t *out_len)
{
    if (z->err != 0)
        return z->err;
    if (!z->sniffed) {
        int s = sniff(z, in, in_len);
        if (s != 0)
            return s < 0 ? s : 0;
    }
    for (;;) {
        int from_stash = z->stash_off < z->nstash;
        const unsigned char *src =
            from_stash ? z->stash + z->stash_off : (const unsigned char *)*in;
        size_t avail = from_stash ? z->nstash - z->stash_off : *in_len;
        size_t room = cap - *out_len;

        if (z->ended) {
            if (avail == 0)
                return 0;
            if (z->coding != QF_CODING_GZIP)
                return fail(z, QF_EPROTO, "corrupt deflate body: data after the end of the stream");
            /* RFC 1952 2.2: a gzip file is a series of members. */
            inflateReset(&z->zs);
            z->ended = 0;
        }
        if (avail == 0 && !z->pending)
            return 0;
        uInt ain = avail > UINT_MAX ? UINT_MAX : (uInt)avail;
        uInt aout = room > UINT_MAX ? UINT_MAX : (uInt)room;
        z->zs.next_in = src;
        z->zs.avail_in = ain;
        Bytef none; /* zlib wants a pointer even for no room; out may be NULL then */
        z->zs.next_out = room > 0 ? (Bytef *)out + *out_len : &none;
        z->zs.avail_out = aout;
        int rc = inflate(&z->zs, Z_NO_FLUSH);
        size_t used = ain - z->zs.avail_in, made = aout - z->zs.avail_out;
        if (from_stash) {
            z->stash_off += (unsigned)used;
        } else {
            *in += used;
            *in_len -= used;
        }
        z->in_total += used;
        z->out_total += made;
        *out_len += made;
        z->pending = z->zs.avail_out == 0;
        if (check_caps(z) != 0)
            return z->err;
        switch (rc) {
        case Z_OK:
            break; /* progress was made: go on until input or room runs out */
        case Z_STREAM_END:
            z->ended = 1;
            z->pending = 0;
            break;
        case Z_BUF_ERROR: /* no progress possible: it needs room, or input */
            if (z->zs.avail_out == 0)
                return QF_ENOSPC;
            z->pending = 0;
            if (avail > 0) /* zlib takes input whenever it has room: never expected */
                return fail(z, QF_EPROTO, "corrupt %s body: the inflater is stuck", name(z));
            return 0;
        case Z_NEED_DICT:
            return fail(z, QF_EPROTO, "corrupt %s body: it needs a preset dictionary", name(z));
        case Z_MEM_ERROR:
            return fail(z, QF_ENOMEM, "out of memory inflating the %s body", name(z));
        default:
            return fail(z, QF_EPROTO, "corrupt %s body: %s", name(z),
                        z->zs.msg ? z->zs.msg : "bad stream");
        }
    }
}

int qf_inflate_end(struct qf_inflate *z)
{
    if (z->err != 0)
        return z->err;
    if (z->ended || (z->in_total == 0 && z->nstash == 0))
        return 0;
    return fail(z, QF_EPROTO, "corrupt %s body: the stream is cut short", name(z));
}

void qf_inflate_free(struct qf_inflate *z)
{
    if (z->ready)
        inflateEnd(&z->zs);
    z->ready = 0;
}
