/* Coded response bodies (Content-Encoding gzip or deflate) of one response (an HTTP/1.1
 * connection's current one, or an HTTP/2 stream's): whether its body goes through the
 * inflater (parser/inflate.c), the buffer it inflates into, and the caps on both sides. */
#ifndef QF_DECODE_H
#define QF_DECODE_H

#include <stddef.h>

#include "parser/inflate.h"

struct qf_client;
struct qf_outcome;
struct qf_req;

/* A streamed request gets its inflated bytes in pieces of this size (or of the buffer's size,
 * when a buffered body on the same slot grew it). */
#define QF_DECODE_PIECE 16384

struct qf_decode {
    struct qf_inflate z;   /* zlib's state: made on the slot's first coded body, then reset */
    char *out;             /* the inflated body; for a streamed request, the piece in hand */
    size_t len, cap;
    int checked;           /* the current response's headers were looked at */
    int active;            /* its body goes through z (or is refused: unsupported) */
    int unsupported;       /* its coding is one we cannot undo: refused if a body byte comes */
    int err;               /* decoding failed: the rest of the body is dropped, then reported */
    size_t raw;            /* coded bytes of the current body */
    char msg[160];
};

/* Once per slot, before anything else: zlib allocates through the engine's counted allocator. */
void qf_decode_init(struct qf_decode *d);
/* A new response is expected on the connection. */
void qf_decode_expect(struct qf_decode *d);
/* The final response's headers are parsed: decides whether r's body is decoded, given its
 * Content-Encoding (coding_len > coding_cap: too long to keep). A quote's always is; a
 * general request's only when it asked (qf_request.compressed). */
void qf_decode_begin(struct qf_decode *d, const struct qf_req *r, const char *coding,
                     size_t coding_len, size_t coding_cap);
/* Takes coded bytes from *in (advancing it) into d->out. A failure to decode is kept for the
 * report and the rest of the body is dropped. Returns 0 when all of the input is used;
 * QF_ENOSPC when a streamed request's piece is full (hand d->out[0..len) on, empty it, call
 * again); QF_EBODY when the coded bytes pass the body cap (the connection must go). */
int qf_decode_feed(struct qf_client *cl, struct qf_decode *d, const struct qf_req *r,
                   const char **in, size_t *len);
/* The response is complete: the outcome gets the inflated body, or the decoding error. */
void qf_decode_outcome(struct qf_decode *d, struct qf_outcome *o);
/* The connection closes: an inflated-body buffer larger than keep goes back to the client's
 * budget. */
void qf_decode_release(struct qf_client *cl, struct qf_decode *d, size_t keep);
/* The client is freed. */
void qf_decode_free(struct qf_decode *d);

#endif
