/* Content-Encoding for response bodies: the coding a header names, and a streaming inflater
 * over zlib for gzip and deflate (zlib-wrapped or raw). Knows nothing of sockets or the
 * engine and never allocates: the caller owns the input and output buffers, and zlib's own
 * state is made through the allocator the caller installs with qf_inflate_init(). */
#ifndef QF_PARSER_INFLATE_H
#define QF_PARSER_INFLATE_H

#include <stddef.h>
#include <stdint.h>

#ifndef ZLIB_CONST
#define ZLIB_CONST
#endif
#include <zlib.h>

/* A body whose inflated size passes QF_INFLATE_RATIO_FREE bytes may not exceed
 * QF_INFLATE_RATIO_MAX times the coded bytes read: Yahoo's JSON inflates about 4-10 times,
 * a decompression bomb about 1000 times. */
#define QF_INFLATE_RATIO_MAX 100
#define QF_INFLATE_RATIO_FREE (64 * 1024)

enum qf_coding {
    QF_CODING_IDENTITY, /* no header, "identity", or only empty or identity entries */
    QF_CODING_GZIP,     /* "gzip" or "x-gzip" (RFC 9110 8.4.1.3) */
    QF_CODING_DEFLATE,  /* "deflate": zlib-wrapped as RFC 9110 says, or raw as many servers send */
    QF_CODING_UNKNOWN,  /* anything else, or more than one coding applied */
};

struct qf_inflate {
    z_stream zs;
    int ready;        /* zlib's state exists (made by the first qf_inflate_begin) */
    int coding;       /* of the current body */
    int sniffed;      /* deflate: zlib-wrapped or raw, settled by the first two bytes */
    int ended;        /* the stream (for gzip: its last member so far) is complete */
    int pending;      /* the last inflate filled the output: more may be waiting */
    int err;          /* sticky QF_E* once a feed failed; msg says why */
    unsigned char stash[2]; /* deflate: the first two bytes, held until the choice is made */
    unsigned nstash, stash_off;
    uint64_t in_total, out_total, out_max;
    char msg[112];
};

/* Which coding a Content-Encoding value names: a comma list as received, case-insensitive,
 * with optional blanks; len may be 0. */
enum qf_coding qf_inflate_coding(const char *value, size_t len);

/* Clears z and installs zlib's allocator (NULL, NULL: zlib's default). Before any other call. */
void qf_inflate_init(struct qf_inflate *z, alloc_func alloc, free_func release, void *opaque);

/* Prepares z for one body in coding (QF_CODING_GZIP or QF_CODING_DEFLATE) whose inflated size
 * may not exceed out_max. zlib's state is made on the first call and reset by later ones, so
 * a connection pays for it once. Returns 0, or QF_ENOMEM (z stays usable for another try). */
int qf_inflate_begin(struct qf_inflate *z, enum qf_coding coding, uint64_t out_max);

/* Inflates coded bytes from *in (*in and *in_len advance past what was used) into
 * out[*out_len..cap) (*out_len advances). Returns:
 *   0           all of the input was used and nothing is waiting: feed more when it comes;
 *   QF_ENOSPC   out is full and more may be waiting: make room (or take what is there) and
 *               call again, with the rest of the input or none;
 *   QF_EPROTO   a corrupt stream, or bytes after the end of a deflate stream;
 *   QF_EBODY    the inflated size passed out_max or the ratio cap;
 *   QF_ENOMEM   zlib could not allocate its window.
 * Errors are sticky and msg names them ("corrupt gzip body: invalid block type"). */
int qf_inflate_feed(struct qf_inflate *z, const char **in, size_t *in_len, char *out, size_t cap,
                    size_t *out_len);

/* The body ended. Returns 0 when the stream was complete, or when no byte came at all (an
 * empty body); QF_EPROTO when it was cut short; or the sticky error. */
int qf_inflate_end(struct qf_inflate *z);

/* Frees zlib's state; z may be begun again after qf_inflate_init(). */
void qf_inflate_free(struct qf_inflate *z);

#endif
