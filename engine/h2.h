/* HTTP/2 on one connection (nghttp2): its session and stream table. Bytes in, frames out,
 * requests submitted as streams and ended streams listed for the connection to report; no
 * socket is touched here, and no policy decided. Included by conn.h. */
#ifndef QF_H2_H
#define QF_H2_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/decode.h"

struct nghttp2_session;
struct qf_client;
struct qf_conn;
struct qf_req;
struct qf_outcome;

/* Requests in flight per host over HTTP/2 unless -c says otherwise: curl's --parallel-max
 * for a multiplexed host, and below every common server's SETTINGS_MAX_CONCURRENT_STREAMS. */
#define QF_H2_DEFAULT_STREAMS 100
/* Receive windows: a stream's must take a whole quote body (a year of daily data is about
 * 370 KB) without waiting for a WINDOW_UPDATE round trip; the connection's, all streams'. */
#define QF_H2_STREAM_WINDOW (1 << 20)
#define QF_H2_CONN_WINDOW (32 << 20)

struct qf_h2_stream {
    struct qf_req *req;    /* NULL: the slot is free (or its request was cancelled) */
    int32_t id;
    int status;            /* of the final response; 1xx ones are skipped */
    int retry_after_s;
    int headers_done;      /* the final response's header block is complete */
    int first;             /* opened with the connection: its phases are the connection's */
    int reset_by_peer;     /* the server sent RST_STREAM */
    int sent;              /* its HEADERS went out (to the socket's buffer, at least) */
    int unsent;            /* nghttp2 could not send its HEADERS: the server never saw it */
    int ended;             /* on the done list */
    int err;               /* failed here (a cap, on_head/on_chunk abort): QF_E*, msg says why */
    uint32_t code;         /* the stream's closing error code */
    size_t header_bytes;
    char coding[32];       /* Content-Encoding; coding_len > sizeof: too long to keep */
    size_t coding_len;
    char *body;            /* buffered body (not when streamed or decoded) */
    size_t body_len, body_cap;
    char *hbuf;            /* general requests: "name\0value\0" pairs of the final response */
    size_t hlen, hcap;
    unsigned nheaders;
    struct qf_decode dec;
    int64_t t_start, t_first;
    char msg[160];
};

struct qf_h2 {
    struct nghttp2_session *ng; /* NULL: the connection does not speak HTTP/2 */
    struct qf_conn *c;
    struct qf_h2_stream *st;    /* kept with the slot across connections */
    unsigned cap, nactive;
    unsigned *done;             /* streams ended in the last feed, to be reported */
    unsigned ndone;
    unsigned nstreams;          /* streams opened on this connection */
    int goaway;                 /* the server will take no new stream */
    int32_t goaway_last;
    uint32_t goaway_code;
    int64_t t_progress;         /* when a stream last got a response byte (or the start) */
    unsigned peer_streams;      /* the server's SETTINGS_MAX_CONCURRENT_STREAMS, 0: not told */
    unsigned peer_guess;        /* the limit assumed until its SETTINGS arrive */
    int settings_seen;
    char why[96];               /* nghttp2's reason for a connection error */
    void *nv;                   /* scratch for one request's header list */
    char *scratch;
    size_t nv_cap, scratch_cap;
};

/* The connection c speaks HTTP/2 from now on: a new session, its SETTINGS and windows queued.
 * The stream table holds cap streams; until the server's SETTINGS arrive, at most peer are
 * opened (0: cap), its last connection's word. 0 or QF_ENOMEM. */
int qf_h2_start(struct qf_h2 *m, struct qf_conn *c, unsigned cap, unsigned peer);
/* Streams the connection may carry at once: the server's limit, within the table's. */
unsigned qf_h2_limit(const struct qf_h2 *m);
/* Streams that may be opened now: the server's limit and the table's, 0 after GOAWAY. */
unsigned qf_h2_room(const struct qf_h2 *m);
/* Opens a stream for r (first: carried by the connection's handshake). 0 or QF_ENOMEM. */
int qf_h2_submit(struct qf_h2 *m, struct qf_req *r, int first);
/* Bytes to send now (frames nghttp2 queued), or 0; *out valid until the next call. */
ssize_t qf_h2_output(struct qf_h2 *m, const char **out);
/* Feeds received bytes: ended streams are put on the done list. 0, or QF_EPROTO (a
 * connection error: the session is over) with the reason in msg. */
int qf_h2_feed(struct qf_h2 *m, const char *buf, size_t len, char *msg, size_t msglen);
/* The outcome of ended stream s (views into its buffers, valid until it is reused); the
 * caller adds the timings. */
void qf_h2_outcome(struct qf_h2 *m, struct qf_h2_stream *s, struct qf_outcome *o);
/* Frees stream s's slot; its buffers stay for the next. */
void qf_h2_release(struct qf_h2 *m, struct qf_h2_stream *s);
/* Stream s is reset (RST_STREAM CANCEL); its slot stays for its report. */
void qf_h2_reset(struct qf_h2 *m, struct qf_h2_stream *s);
/* Free slots give back body buffers larger than keep to the client's budget (a hostile
 * response's 8 MiB is not kept for the next stream). */
void qf_h2_trim(struct qf_h2 *m, size_t keep);
/* r is cancelled: its stream is reset (RST_STREAM CANCEL) and its slot freed. */
void qf_h2_cancel(struct qf_h2 *m, struct qf_req *r);
/* Whether the server may have worked on stream s: its HEADERS went out, and not above a
 * GOAWAY's last stream id. */
int qf_h2_processed(const struct qf_h2 *m, const struct qf_h2_stream *s);
/* The connection ends: the session goes; the table stays with the slot. */
void qf_h2_end(struct qf_h2 *m);
/* The slot goes (qf_client_free): buffers too, into the client's budget. */
void qf_h2_free(struct qf_client *cl, struct qf_h2 *m);

#endif
