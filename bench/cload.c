// cload: a lean single-threaded epoll load client (C), so that the client is not the
// bottleneck when measuring the ceiling server.
//
// Copied from the project's shared benchmark peers (bench-peers/cload.c, written for issue 9's
// speed comparison); wsgate's copy adds the sio-idle mode (memory per idle connection).
//
//   cload sio-echo   PORT TOKENFILE ORIGIN CLIENTS WARMUP_S DURATION_S TEXTLEN
//   cload sio-fanout PORT TOKENFILE ORIGIN RECEIVERS MESSAGES TEXTLEN
//   cload ws-echo    PORT PATH CLIENTS WARMUP_S DURATION_S MSGLEN
//   cload sio-connect PORT TOKENFILE ORIGIN N PROCS   (S1: connect, whoami, close; PROCS blocking workers)
//   cload sio-idle   PORT TOKENFILE ORIGIN N HOLD_S   (N connections, each CONNECT + whoami, then idle)
//
// Websocket PINGs (uvicorn sends one every 20 s) are answered with a PONG and not counted.
// sio-idle prints "MARK before" after 50 warm-up connections were opened and closed, then opens
// N authenticated connections, answers pings while they idle and prints "MARK after" HOLD_S
// seconds after the last one connected: the orchestrator reads the server's RSS at both marks.
//
// TOKENFILE: one HS256 JWT per line (used round-robin), sent in the access_token cookie.
// Client frames are masked with a fixed non-zero key (the server unmasks as usual).
// Prints "MARK measure_start" / "MARK measure_end" lines at the window boundaries (the
// orchestrator samples server CPU there) and one JSON result line at the end.
// Every reply is checked byte for byte (echo) or by prefix + sequence (fan-out).
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd, idx;
  unsigned char *buf; size_t len, cap;
  uint64_t seq; double sent_at; int inflight;
  char expect[2048]; size_t expect_len;
  unsigned char *got; long n;  // fan-out: per-message seen bitmap
} conn_t;

static int PORT;
static const unsigned char MASK[4] = {0x37, 0xfa, 0x21, 0x3d};
static long errors = 0;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static double cpu_s(void) { struct rusage r; getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6; }
static void die(const char *m) { fprintf(stderr, "cload: %s (errno %d %s)\n", m, errno, strerror(errno)); exit(2); }

static void ws_send_op(conn_t *c, int op, const char *data, size_t n) {
  unsigned char out[4096]; size_t h;
  if (n + 14 > sizeof out) die("message too big");
  out[0] = 0x80 | op;
  if (n < 126) { out[1] = 0x80 | n; h = 2; }
  else { out[1] = 0x80 | 126; out[2] = n >> 8; out[3] = n & 0xff; h = 4; }
  memcpy(out + h, MASK, 4); h += 4;
  for (size_t i = 0; i < n; i++) out[h + i] = data[i] ^ MASK[i & 3];
  ssize_t w = write(c->fd, out, h + n);
  if (w != (ssize_t)(h + n)) die("short write");
}
static void ws_send(conn_t *c, const char *data, size_t n) { ws_send_op(c, 1, data, n); }
// a websocket PING (uvicorn's keepalive, every 20 s) is answered, as a browser does, and not counted
static int answered_ping(conn_t *c, int op, unsigned char *pl, size_t plen) {
  if (op != 9) return 0;
  ws_send_op(c, 10, (const char *)pl, plen);
  return 1;
}

// a complete frame at the start of c->buf? returns its total length, 0 if incomplete
static size_t parse_frame(conn_t *c, int *op, unsigned char **pl, size_t *plen) {
  unsigned char *b = c->buf; size_t n = c->len, len, h = 2;
  if (n < 2) return 0;
  if (b[1] & 0x80) die("masked server frame");
  len = b[1] & 0x7f;
  if (len == 126) { if (n < 4) return 0; len = ((size_t)b[2] << 8) | b[3]; h = 4; }
  else if (len == 127) { if (n < 10) return 0; len = 0; for (int i = 2; i < 10; i++) len = (len << 8) | b[i]; h = 10; }
  if (n < h + len) return 0;
  *op = b[0] & 0x0f; *pl = b + h; *plen = len;
  return h + len;
}
static void consume(conn_t *c, size_t k) { memmove(c->buf, c->buf + k, c->len - k); c->len -= k; }
static int fill(conn_t *c) {  // read once; returns bytes read, 0 on EAGAIN, dies on EOF
  if (c->cap - c->len < 65536) { c->cap = c->cap * 2 + 65536; c->buf = realloc(c->buf, c->cap); }
  ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
  if (r == 0) die("server closed a connection");
  if (r < 0) { if (errno == EAGAIN) return 0; die("read"); }
  c->len += r; return (int)r;
}
// blocking: next text frame payload (copied into out), answering engine.io pings
static size_t next_text(conn_t *c, char *out, size_t cap) {
  for (;;) {
    int op; unsigned char *pl; size_t plen, k = parse_frame(c, &op, &pl, &plen);
    if (!k) { fill(c); continue; }
    if (op == 1 && plen == 1 && pl[0] == '2') { consume(c, k); ws_send(c, "3", 1); continue; }
    if (answered_ping(c, op, pl, plen)) { consume(c, k); continue; }
    if (op != 1) die("unexpected frame opcode");
    if (plen >= cap) die("frame too big");
    memcpy(out, pl, plen); out[plen] = 0; consume(c, k); return plen;
  }
}

static void open_ws(conn_t *c, const char *path, const char *extra) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a)) die("connect");
  char req[4096];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n", path, PORT, extra);
  if (write(c->fd, req, n) != n) die("write upgrade");
  c->cap = 65536; c->buf = malloc(c->cap); c->len = 0;
  for (;;) {
    fill(c);
    unsigned char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!e) continue;
    if (memcmp(c->buf, "HTTP/1.1 101", 12)) { c->buf[c->len < 200 ? c->len : 200] = 0; fprintf(stderr, "%s\n", c->buf); die("upgrade refused"); }
    consume(c, e + 4 - c->buf); return;
  }
}

static char **tokens, **subs; static int ntokens;
static void load_tokens(const char *file) {
  FILE *f = fopen(file, "r"); if (!f) die("token file");
  char line[4096]; tokens = malloc(sizeof(char *) * 200000); subs = malloc(sizeof(char *) * 200000);
  while (fgets(line, sizeof line, f) && ntokens < 200000) {  // "TOKEN" or "SUB TOKEN"
    line[strcspn(line, "\r\n")] = 0; if (!*line) continue;
    char *sp = strchr(line, ' ');
    if (sp) { *sp = 0; subs[ntokens] = strdup(line); tokens[ntokens++] = strdup(sp + 1); }
    else { subs[ntokens] = NULL; tokens[ntokens++] = strdup(line); }
  }
  fclose(f); if (!ntokens) die("no tokens");
}
static void open_sio(conn_t *c, const char *origin) {
  char extra[4096], pkt[4096];
  snprintf(extra, sizeof extra, "Origin: %s\r\nCookie: access_token=%s\r\n", origin, tokens[c->idx % ntokens]);
  open_ws(c, "/socket.io/?EIO=4&transport=websocket", extra);
  next_text(c, pkt, sizeof pkt);
  if (pkt[0] != '0') die("no engine.io open packet");
  ws_send(c, "40", 2);
  next_text(c, pkt, sizeof pkt);
  if (strncmp(pkt, "40", 2)) { fprintf(stderr, "%s\n", pkt); die("socket.io connect refused"); }
}

static int ep;
static void to_epoll(conn_t *c) {
  int fl = 1; if (ioctl(c->fd, FIONBIO, &fl)) die("FIONBIO");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev)) die("epoll_ctl");
}

static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static double pct(double *v, long n, double p) { if (!n) return -1; long i = (long)(p / 100 * n + 0.999999) - 1; if (i < 0) i = 0; if (i >= n) i = n - 1; return v[i]; }

// ------------------------------------------------------------------ echo (sio or plain ws)
static int SIO; static int TEXTLEN; static double T_MEASURE, T_END;
static double *lat; static long nlat, lat_cap, acks_window, acks_total;

static void fire(conn_t *c) {
  double t = now();
  if (t >= T_END) { c->inflight = 0; return; }
  char text[1500]; int h = snprintf(text, sizeof text, "c%ds%lu:", c->idx, (unsigned long)++c->seq);
  int tl = TEXTLEN > h ? TEXTLEN : h + 1; memset(text + h, 'x', tl - h); text[tl] = 0;
  char msg[2048]; int n;
  if (SIO) {
    n = snprintf(msg, sizeof msg, "42%lu[\"echo\",{\"text\":\"%s\"}]", (unsigned long)c->seq, text);
    c->expect_len = snprintf(c->expect, sizeof c->expect, "43%lu[{\"text\":\"%s\"}]", (unsigned long)c->seq, text);
  } else {
    n = tl; memcpy(msg, text, tl); memcpy(c->expect, text, tl); c->expect_len = tl;
  }
  c->inflight = 1; c->sent_at = t; ws_send(c, msg, n);
}

static void on_echo_frame(conn_t *c, int op, unsigned char *pl, size_t plen) {
  if (answered_ping(c, op, pl, plen)) return;
  if (op == 1 && SIO && plen == 1 && pl[0] == '2') { ws_send(c, "3", 1); return; }
  if (op != 1 || !c->inflight || plen != c->expect_len || memcmp(pl, c->expect, plen)) { errors++; return; }
  double t = now(); c->inflight = 0; acks_total++;
  if (t >= T_MEASURE && t <= T_END) {
    acks_window++;
    if (c->sent_at >= T_MEASURE) { if (nlat == lat_cap) { lat_cap *= 2; lat = realloc(lat, lat_cap * sizeof *lat); } lat[nlat++] = t - c->sent_at; }
  }
  fire(c);
}

static void run_loop(conn_t *cs, void (*on_frame)(conn_t *, int, unsigned char *, size_t), int (*done)(void), double until) {
  struct epoll_event evs[1024];
  while (now() < until && !(done && done())) {
    int k = epoll_wait(ep, evs, 1024, 50);
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (fill(c) > 0) {  // one read per event (level-triggered: more data reports again)
        int op; unsigned char *pl; size_t plen, used = 0, fl;
        for (;;) {  // parse all complete frames, then compact once
          conn_t view = *c; view.buf = c->buf + used; view.len = c->len - used;
          if (!(fl = parse_frame(&view, &op, &pl, &plen))) break;
          on_frame(c, op, pl, plen); used += fl;
        }
        if (used) consume(c, used);
      }
    }
  }
}

static int echo_main(int argc, char **argv, int sio) {
  SIO = sio;
  int clients, warm, dur; const char *origin = NULL, *path = NULL;
  if (sio) { if (argc != 9) die("args"); load_tokens(argv[3]); origin = argv[4]; clients = atoi(argv[5]); warm = atoi(argv[6]); dur = atoi(argv[7]); TEXTLEN = atoi(argv[8]); }
  else { if (argc != 8) die("args"); path = argv[3]; clients = atoi(argv[4]); warm = atoi(argv[5]); dur = atoi(argv[6]); TEXTLEN = atoi(argv[7]); }
  conn_t *cs = calloc(clients, sizeof *cs);
  for (int i = 0; i < clients; i++) { cs[i].idx = i; if (sio) open_sio(&cs[i], origin); else open_ws(&cs[i], path, ""); }
  ep = epoll_create1(0);
  for (int i = 0; i < clients; i++) to_epoll(&cs[i]);
  lat_cap = 1 << 20; lat = malloc(lat_cap * sizeof *lat);
  double t0 = now(); T_MEASURE = t0 + warm; T_END = T_MEASURE + dur;
  for (int i = 0; i < clients; i++) fire(&cs[i]);
  run_loop(cs, on_echo_frame, NULL, T_MEASURE);
  double c0 = cpu_s(); printf("MARK measure_start\n"); fflush(stdout);
  run_loop(cs, on_echo_frame, NULL, T_END);
  double c1 = cpu_s(); printf("MARK measure_end\n"); fflush(stdout);
  run_loop(cs, on_echo_frame, NULL, now() + 2.0);  // drain
  long stuck = 0; for (int i = 0; i < clients; i++) stuck += cs[i].inflight;
  qsort(lat, nlat, sizeof *lat, cmpd);
  printf("{\"mode\":\"%s\",\"clients\":%d,\"duration_s\":%d,\"len\":%d,\"acks_per_s\":%.1f,\"acks_total\":%ld,"
         "\"rtt_p50_ms\":%.3f,\"rtt_p99_ms\":%.3f,\"errors\":%ld,\"unanswered\":%ld,\"client_cpu_pct\":%.1f}\n",
         sio ? "sio-echo" : "ws-echo", clients, dur, TEXTLEN, acks_window / (double)dur, acks_total,
         pct(lat, nlat, 50) * 1e3, pct(lat, nlat, 99) * 1e3, errors, stuck, 100 * (c1 - c0) / dur);
  return errors || stuck ? 1 : 0;
}

// ------------------------------------------------------------------ fan-out
static int R, M; static long delivered, warm_delivered, acked, dupes, expected_total, warm_target, want_acks;
static conn_t *sender; static double last_delivery;
static void bad_frame(const char *why, int op, unsigned char *pl, size_t plen) {  // the first few, to stderr
  errors++;
  if (errors <= 5) fprintf(stderr, "cload: unexpected frame (%s, opcode %d): %.*s\n", why, op, (int)(plen < 120 ? plen : 120), pl);
}
static void on_fan_frame(conn_t *c, int op, unsigned char *pl, size_t plen) {
  if (answered_ping(c, op, pl, plen)) return;
  if (op != 1) { bad_frame("not text", op, pl, plen); return; }
  if (plen == 1 && pl[0] == '2') { ws_send(c, "3", 1); return; }
  if (plen > 2 && pl[0] == '4' && pl[1] == '3') {
    if (c == sender && memmem(pl, plen, "[{\"delivered\":true}]", 20)) acked++; else bad_frame("ack", op, pl, plen);
    return;
  }
  if (plen < 14 || memcmp(pl, "42[\"message\",", 13)) { bad_frame("not a message", op, pl, plen); return; }
  if (c == sender) return;  // the sender is a member too; only receivers are counted
  unsigned char *t = memmem(pl, plen, "\"text\":\"", 8);
  if (!t) { bad_frame("no text", op, pl, plen); return; }
  t += 8;
  if (*t == 'W') { warm_delivered++; return; }
  if (*t != 'M') { bad_frame("not W/M", op, pl, plen); return; }
  long seq = strtol((char *)t + 2, NULL, 10);
  if (seq < 0 || seq >= M) { bad_frame("sequence", op, pl, plen); return; }
  if (c->got[seq]) { dupes++; return; }
  c->got[seq] = 1; delivered++; last_delivery = now();
}
static int warm_done(void) { return warm_delivered >= warm_target && acked >= want_acks; }
static int all_done(void) { return delivered >= expected_total && acked >= want_acks; }

static void say(int id, const char *tag, int k, int textlen) {
  char text[1500]; int h = snprintf(text, sizeof text, "%s:%d:", tag, k);
  int tl = textlen > h ? textlen : h; memset(text + h, 'y', tl - h); text[tl] = 0;
  char msg[2048]; int n = snprintf(msg, sizeof msg, "42%d[\"say\",{\"room\":\"r\",\"text\":\"%s\"}]", id, text);
  ws_send(sender, msg, n);
}

static int fanout_main(int argc, char **argv) {
  if (argc != 8) die("args");
  load_tokens(argv[3]); const char *origin = argv[4]; R = atoi(argv[5]); M = atoi(argv[6]); int textlen = atoi(argv[7]);
  conn_t *cs = calloc(R + 1, sizeof *cs);
  char pkt[4096];
  for (int i = 0; i <= R; i++) {
    cs[i].idx = i; cs[i].got = calloc(M, 1); open_sio(&cs[i], origin);
    { const char *j = "420[\"join\",{\"room\":\"r\"}]"; ws_send(&cs[i], j, strlen(j)); }
    next_text(&cs[i], pkt, sizeof pkt);
    if (strcmp(pkt, "430[{\"room\":\"r\"}]")) { fprintf(stderr, "%s\n", pkt); die("join failed"); }
  }
  sender = &cs[0];
  ep = epoll_create1(0);
  for (int i = 0; i <= R; i++) to_epoll(&cs[i]);
  int id = 1;
  warm_target = (long)R * 5; want_acks = 5;
  for (int k = 0; k < 5; k++) say(id++, "W", k, textlen);
  run_loop(cs, on_fan_frame, warm_done, now() + 30);
  if (!warm_done()) die("warm-up not delivered");
  run_loop(cs, on_fan_frame, NULL, now() + 2.0);
  expected_total = (long)R * M; want_acks = 5 + M;
  printf("MARK measure_start\n"); fflush(stdout);
  double c0 = cpu_s(), t0 = now();
  for (int k = 0; k < M; k++) say(id++, "M", k, textlen);
  run_loop(cs, on_fan_frame, all_done, t0 + 60);
  double t1 = delivered >= expected_total ? last_delivery : now(), c1 = cpu_s();
  printf("MARK measure_end\n"); fflush(stdout);
  printf("{\"mode\":\"sio-fanout\",\"receivers\":%d,\"messages\":%d,\"delivered\":%ld,\"expected\":%ld,"
         "\"fanout_time_s\":%.4f,\"deliveries_per_s\":%.1f,\"says_acked\":%ld,\"duplicates\":%ld,\"errors\":%ld,"
         "\"client_cpu_pct\":%.1f}\n", R, M, delivered, expected_total, t1 - t0, delivered / (t1 - t0),
         acked - 5, dupes, errors, 100 * (c1 - c0) / (t1 - t0));
  return delivered == expected_total && acked == want_acks && !errors && !dupes ? 0 : 1;
}

// ------------------------------------------------------------------ connect rate (S1)
static int connect_one(int idx, const char *origin) {
  conn_t c = {.idx = idx}; char pkt[4096], want[512];
  open_sio(&c, origin);
  ws_send(&c, "420[\"whoami\"]", 13);
  next_text(&c, pkt, sizeof pkt);
  const char *sub = subs[idx % ntokens];  // with "SUB TOKEN" lines the sub is checked exactly
  snprintf(want, sizeof want, "430[{\"sub\":\"%s%s", sub ? sub : "", sub ? "\"," : "");
  int ok = !strncmp(pkt, want, strlen(want));
  ws_send(&c, "41", 2);
  unsigned char cl[8] = {0x88, 0x82, MASK[0], MASK[1], MASK[2], MASK[3], 0x03 ^ MASK[0], 0xe8 ^ MASK[1]};
  if (write(c.fd, cl, 8) != 8) die("close write");
  shutdown(c.fd, SHUT_WR);
  char sink[4096]; while (read(c.fd, sink, sizeof sink) > 0) {}
  close(c.fd); free(c.buf);
  return ok;
}
static int connect_main(int argc, char **argv) {
  if (argc != 7) die("args");
  load_tokens(argv[3]); const char *origin = argv[4]; int n = atoi(argv[5]), procs = atoi(argv[6]);
  long *ok = mmap(NULL, sizeof(long) * procs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < 200; i++) connect_one(i, origin);  // warm-up
  printf("MARK measure_start\n"); fflush(stdout);
  double t0 = now();
  for (int p = 0; p < procs; p++) {
    if (fork() == 0) { long k = 0; for (int i = p; i < n; i += procs) k += connect_one(i, origin); ok[p] = k; _exit(0); }
  }
  for (int p = 0; p < procs; p++) wait(NULL);
  double t1 = now();
  struct rusage ru; getrusage(RUSAGE_CHILDREN, &ru);
  double ccpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  printf("MARK measure_end\n"); fflush(stdout);
  long tot = 0; for (int p = 0; p < procs; p++) tot += ok[p];
  printf("{\"mode\":\"sio-connect\",\"n\":%d,\"procs\":%d,\"succeeded\":%ld,\"elapsed_s\":%.3f,\"conns_per_s\":%.1f,"
         "\"errors\":%ld,\"client_cpu_pct\":%.1f}\n", n, procs, tot, t1 - t0, tot / (t1 - t0), n - tot, 100 * ccpu / (t1 - t0));
  return tot == n ? 0 : 1;
}

// ------------------------------------------------------------------ idle memory
static void on_idle_frame(conn_t *c, int op, unsigned char *pl, size_t plen) {
  if (answered_ping(c, op, pl, plen)) return;
  if (op == 1 && plen == 1 && pl[0] == '2') { ws_send(c, "3", 1); return; }
  errors++;  // an idle connection is sent nothing but pings
}
static int idle_main(int argc, char **argv) {
  if (argc != 7) die("args");
  load_tokens(argv[3]); const char *origin = argv[4]; int n = atoi(argv[5]), hold = atoi(argv[6]);
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < (rlim_t)n + 64) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
  for (int i = 0; i < 50; i++) connect_one(i, origin);  // first-use costs land in "before"
  sleep(1);
  printf("MARK before\n"); fflush(stdout);
  conn_t *cs = calloc(n, sizeof *cs); char pkt[4096], want[512]; long bad = 0;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    cs[i].idx = i; open_sio(&cs[i], origin);
    ws_send(&cs[i], "420[\"whoami\"]", 13);
    next_text(&cs[i], pkt, sizeof pkt);
    const char *sub = subs[i % ntokens];
    snprintf(want, sizeof want, "430[{\"sub\":\"%s%s", sub ? sub : "", sub ? "\"," : "");
    if (strncmp(pkt, want, strlen(want))) bad++;
  }
  double t1 = now();
  ep = epoll_create1(0);
  for (int i = 0; i < n; i++) to_epoll(&cs[i]);
  run_loop(cs, on_idle_frame, NULL, now() + hold);
  printf("MARK after\n"); fflush(stdout);
  run_loop(cs, on_idle_frame, NULL, now() + 0.5);
  printf("{\"mode\":\"sio-idle\",\"n\":%d,\"open_s\":%.3f,\"hold_s\":%d,\"errors\":%ld}\n",
         n, t1 - t0, hold, errors + bad);
  for (int i = 0; i < n; i++) close(cs[i].fd);
  return errors || bad ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: see the header of cload.c\n"); return 2; }
  PORT = atoi(argv[2]);
  if (!strcmp(argv[1], "sio-echo")) return echo_main(argc, argv, 1);
  if (!strcmp(argv[1], "ws-echo")) return echo_main(argc, argv, 0);
  if (!strcmp(argv[1], "sio-fanout")) return fanout_main(argc, argv);
  if (!strcmp(argv[1], "sio-connect")) return connect_main(argc, argv);
  if (!strcmp(argv[1], "sio-idle")) return idle_main(argc, argv);
  die("unknown mode");
  return 2;
}
