/*
 * server.c - the libuv driver of the node (server.h; issue 4): lifecycle,
 * the NODE state file and epochs, the storage engine, and the loop that
 * feeds kv_node_step() and carries out its effects. Connections, the
 * handshake and peers live in server_net.c; storage work in
 * server_storage.c.
 *
 * Design note: doc/node.md "The libuv driver". DESIGN §4 "Actors", §8, §9.
 */
#include "node/server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/server_int.h"
#include "proto/chunkhash.h"
#include "ring/keys.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

#define NODE_FILE "NODE"
#define NODE_TMP "NODE.tmp"
#define RUNNING_FILE "RUNNING"
#define NODE_FORMAT 1

void kv_server_options_default(struct kv_server_options *o)
{
	memset(o, 0, sizeof *o);
	snprintf(o->listen_host, sizeof o->listen_host, "127.0.0.1");
	o->listen_port = KV_SERVER_DEFAULT_PORT;
	snprintf(o->cluster, sizeof o->cluster, "kvfs");
	o->n = 3;
	o->r = 2;
	o->w = 2;
	o->timeout_ms = 5000;
	o->forward_timeout_ms = 1000;
	o->connect_timeout_ms = 1000;
	o->idle_timeout_ms = 10000;
	snprintf(o->sync, sizeof o->sync, "always");
	o->memtable_bytes = (size_t)16 << 20;
	o->cache_bytes = (size_t)32 << 20;
	o->max_value = (size_t)4 << 20;
	o->max_conn_queue_bytes = (size_t)64 << 20;
	o->log_level = KV_LOG_INFO;
}

uint64_t kv_srv__now(void)
{
	return uv_hrtime();
}

uint16_t kv_server_port(const struct kv_server *s)
{
	return s->port;
}

/* ---- Logging to a file (--log) ----------------------------------------- */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static void file_sink(enum kv_log_level level, const char *msg, void *arg)
{
	FILE *f = arg;
	uint64_t ns = kv_wall_ns();
	fprintf(f, "%" PRIu64 ".%03u %s: %s\n", ns / 1000000000u,
		(unsigned)(ns / 1000000u % 1000u), level_names[level], msg);
	fflush(f);
}

/* ---- The NODE state file (doc/node.md "The NODE file") ------------------ */

struct node_state {
	bool present;
	uint32_t node_id, n, epoch;
	char cluster[KV_MSG_NAME_ID_MAX + 1];
};

static int path_join(char *dst, size_t cap, const char *dir, const char *name)
{
	int k = snprintf(dst, cap, "%s/%s", dir, name);
	return k < 0 || (size_t)k >= cap ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Writes @bytes to @dir/@name atomically: temp file, fsync, rename, fsync dir. */
static int write_atomic(const char *dir, const char *name, const char *bytes)
{
	char tmp[4200], dst[4200];
	int rc = path_join(tmp, sizeof tmp, dir, NODE_TMP);
	if (rc == 0)
		rc = path_join(dst, sizeof dst, dir, name);
	if (rc != 0)
		return rc;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(bytes), done = 0;
	while (done < len) {
		ssize_t k = write(fd, bytes + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = -errno;
			goto out;
		}
		done += (size_t)k;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, dst) != 0) {
		rc = -errno;
		goto out;
	}
	rc = fsync_dir(dir);
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		unlink(tmp);
	return rc;
}

/* Reads @dir/NODE. Returns 0 (st->present false when there is none) or an error. */
static int node_state_read(const char *dir, struct node_state *st, char *err, size_t errlen)
{
	char path[4200], text[4096];
	memset(st, 0, sizeof *st);
	int rc = path_join(path, sizeof path, dir, NODE_FILE);
	if (rc != 0)
		return rc;
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return rc;
	}
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	bool have_id = false, have_n = false, have_epoch = false, have_cluster = false;
	long format = -1;
	for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *eq = strchr(line, '=');
		if (eq == NULL)
			goto bad;
		*eq = '\0';
		const char *key = line, *val = eq + 1;
		char *end;
		unsigned long v = strtoul(val, &end, 10);
		bool num_ok = *val != '\0' && *end == '\0' && v <= UINT32_MAX;
		if (strcmp(key, "format") == 0 && num_ok)
			format = (long)v;
		else if (strcmp(key, "node_id") == 0 && num_ok)
			st->node_id = (uint32_t)v, have_id = true;
		else if (strcmp(key, "n") == 0 && num_ok)
			st->n = (uint32_t)v, have_n = true;
		else if (strcmp(key, "epoch") == 0 && num_ok && v >= 1)
			st->epoch = (uint32_t)v, have_epoch = true;
		else if (strcmp(key, "cluster") == 0 && strlen(val) <= KV_MSG_NAME_ID_MAX) {
			snprintf(st->cluster, sizeof st->cluster, "%s", val);
			have_cluster = true;
		} else if (strcmp(key, "format") == 0 || strcmp(key, "node_id") == 0 ||
			   strcmp(key, "n") == 0 || strcmp(key, "epoch") == 0 ||
			   strcmp(key, "cluster") == 0)
			goto bad;
		/* other keys: written by a later version; ignored */
	}
	if (format != NODE_FORMAT) {
		snprintf(err, errlen, "%s: unknown format (want format=%d)", path, NODE_FORMAT);
		return KV_EVERSION;
	}
	if (!have_id || !have_n || !have_epoch || !have_cluster)
		goto bad;
	st->present = true;
	return 0;
bad:
	snprintf(err, errlen, "%s is damaged (want format, node_id, cluster, n, epoch)", path);
	return KV_ECORRUPT;
}

static int node_state_write(const char *dir, const struct node_state *st)
{
	char text[512];
	snprintf(text, sizeof text,
		 "# kvfs node state: doc/node.md \"The NODE file\"\n"
		 "format=%d\nnode_id=%" PRIu32 "\ncluster=%s\nn=%" PRIu32 "\nepoch=%" PRIu32 "\n",
		 NODE_FORMAT, st->node_id, st->cluster, st->n, st->epoch);
	return write_atomic(dir, NODE_FILE, text);
}

/*
 * The clean-shutdown marker: RUNNING exists while the node runs and names
 * its sync policy (for people); a clean stop removes it. Returns 1 when it
 * was left behind — an unclean stop, under any sync policy — else 0.
 * Every unclean stop takes a new epoch (doc/node.md "Epochs"): a
 * coordinating replica ships a put's set in parallel with its own write,
 * so a crash may lose a local write whose dot other replicas already hold.
 */
static int running_marker_present(const char *dir)
{
	char path[4200];
	struct stat stbuf;
	if (path_join(path, sizeof path, dir, RUNNING_FILE) != 0)
		return 0;
	return stat(path, &stbuf) == 0 ? 1 : 0;
}

static int running_marker_set(const char *dir, const char *sync)
{
	char text[128];
	snprintf(text, sizeof text, "sync=%s\n", sync);
	return write_atomic(dir, RUNNING_FILE, text);
}

static void running_marker_clear(const char *dir)
{
	char path[4200];
	if (path_join(path, sizeof path, dir, RUNNING_FILE) == 0 && unlink(path) == 0)
		(void)fsync_dir(dir);
}

/* ---- Stepping the core -------------------------------------------------- */

static void apply_effects(struct kv_server *s);

/* One kv_node_step() and its effects. Never nested (s->in_step). */
static void step_one(struct kv_server *s, const struct kv_input *in)
{
	s->node.wall_ns = (int64_t)kv_wall_ns();
	int rc = kv_node_step(&s->node, kv_srv__now(), in, &s->fx);
	if (rc != 0)
		kv_debug("node %s: step of input %d: %s", s->self_name, (int)in->type,
			 kv_strerror(rc));
	apply_effects(s);
	kv_effects_clear(&s->fx);
}

/* Runs the synthetic inputs queued while effects were applied. */
static void pump_synth(struct kv_server *s)
{
	char text[64];
	while (s->nsynth > 0) {
		struct srv_synth sy = s->synth[0];
		memmove(s->synth, s->synth + 1, (s->nsynth - 1) * sizeof *s->synth);
		s->nsynth--;
		struct kv_msg m;
		kv_msg_init(&m, KV_MSG_ERROR);
		snprintf(text, sizeof text, "node %" PRIu32 " unreachable", sy.from);
		m.error.code = KV_ECLOSED;
		m.error.text = kv_slice_str(text);
		struct kv_input in = { .type = KV_INPUT_PEER };
		in.peer.from = sy.from;
		in.peer.request_id = sy.request_id;
		in.peer.msg = &m;
		s->c.fast_failovers++;
		step_one(s, &in);
		kv_msg_release(&m);
	}
}

void kv_srv__step(struct kv_server *s, const struct kv_input *in)
{
	assert(!s->in_step);
	s->in_step = true;
	step_one(s, in);
	pump_synth(s);
	s->in_step = false;
}

void kv_srv__synth_error(struct kv_server *s, uint32_t from, uint64_t request_id)
{
	if (s->nsynth == s->capsynth) {
		size_t cap = s->capsynth ? s->capsynth * 2 : 16;
		struct srv_synth *p = realloc(s->synth, cap * sizeof *p);
		if (p == NULL)
			return; /* the core's timer handles the loss */
		s->synth = p;
		s->capsynth = cap;
	}
	s->synth[s->nsynth++] = (struct srv_synth){ from, request_id };
	if (!s->in_step && !s->stopping) {
		s->in_step = true;
		pump_synth(s);
		s->in_step = false;
	}
}

void kv_srv__client_input(struct kv_server *s, struct srv_conn *c, const struct kv_frame *f,
			  const struct kv_msg *m)
{
	struct kv_input in = { .type = KV_INPUT_CLIENT };
	in.client.conn = c->id;
	in.client.request_id = f->request_id;
	in.client.msg = m;
	kv_srv__step(s, &in);
}

void kv_srv__peer_input(struct kv_server *s, uint32_t from, uint64_t request_id,
			const struct kv_msg *m)
{
	struct kv_input in = { .type = KV_INPUT_PEER };
	in.peer.from = from;
	in.peer.request_id = request_id;
	in.peer.msg = m;
	kv_srv__step(s, &in);
}

/* ---- Timers ------------------------------------------------------------- */

static void timer_free_cb(uv_handle_t *h)
{
	free(h->data);
}

static struct srv_timer **timer_slot(struct kv_server *s, uint64_t id)
{
	struct srv_timer **pp = &s->timers[id % SRV_HASH_BUCKETS];
	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->hnext;
	return pp;
}

static void timer_cb(uv_timer_t *h)
{
	struct srv_timer *t = h->data;
	struct kv_server *s = t->s;
	struct srv_timer **pp = timer_slot(s, t->id);
	if (*pp == t)
		*pp = t->hnext;
	struct kv_input in = { .type = KV_INPUT_TIMER };
	in.timer.id = t->id;
	uv_close((uv_handle_t *)&t->h, timer_free_cb);
	kv_srv__step(s, &in);
}

static void timer_set(struct kv_server *s, uint64_t id, uint64_t at_ns)
{
	struct srv_timer *t = calloc(1, sizeof *t);
	if (t == NULL) {
		kv_error("node %s: out of memory for a timer", s->self_name);
		return;
	}
	t->s = s;
	t->id = id;
	uv_timer_init(&s->loop, &t->h);
	t->h.data = t;
	struct srv_timer **pp = &s->timers[id % SRV_HASH_BUCKETS];
	t->hnext = *pp;
	*pp = t;
	uint64_t now = kv_srv__now();
	uint64_t ms = at_ns > now ? (at_ns - now + 999999u) / 1000000u : 0;
	uv_timer_start(&t->h, timer_cb, ms, 0);
}

static void timer_cancel(struct kv_server *s, uint64_t id)
{
	struct srv_timer **pp = timer_slot(s, id);
	struct srv_timer *t = *pp;
	if (t == NULL)
		return;
	*pp = t->hnext;
	uv_timer_stop(&t->h);
	uv_close((uv_handle_t *)&t->h, timer_free_cb);
}

static void timers_close_all(struct kv_server *s)
{
	for (size_t b = 0; b < SRV_HASH_BUCKETS; b++)
		while (s->timers[b] != NULL)
			timer_cancel(s, s->timers[b]->id);
}

/* ---- Effects ------------------------------------------------------------ */

static void apply_effects(struct kv_server *s)
{
	struct kv_effects *fx = &s->fx;
	for (size_t i = 0; i < fx->aborts.n; i++)
		kv_srv__peer_abort(s, fx->aborts.v[i]);
	for (size_t i = 0; i < fx->sends.n; i++) {
		struct kv_node_msg_out *m = &fx->sends.v[i];
		if (m->to == s->o.node_id) {
			kv_warn("node %s: the core sent %s to itself; dropped", s->self_name,
				kv_msg_type_name(m->msg.type));
			continue;
		}
		if (!s->stopping)
			kv_srv__peer_send(s, m->to, &m->msg, m->request_id);
	}
	for (size_t i = 0; i < fx->replies.n; i++) {
		struct kv_node_msg_out *m = &fx->replies.v[i];
		struct srv_conn *c = kv_srv__conn_find(s, m->conn);
		if (c != NULL)
			(void)kv_srv__conn_send(c, &m->msg, m->request_id);
	}
	for (size_t i = 0; i < fx->cancels.n; i++)
		timer_cancel(s, fx->cancels.v[i]);
	for (size_t i = 0; i < fx->timers.n; i++)
		if (!s->stopping)
			timer_set(s, fx->timers.v[i].id, fx->timers.v[i].at_ns);
	if (s->stopping)
		return; /* no new storage work once stopping; the core is dropped */
	for (size_t i = 0; i < fx->writes.n; i++)
		kv_srv__queue_write(s, &fx->writes.v[i]);
	for (size_t i = 0; i < fx->reads.n; i++)
		kv_srv__queue_read(s, fx->reads.v[i].op, &fx->reads.v[i].key, NULL, 0, 0, false);
	for (size_t i = 0; i < fx->ranges.n; i++)
		kv_srv__queue_read(s, fx->ranges.v[i].op, &fx->ranges.v[i].start, &fx->ranges.v[i].end,
			   fx->ranges.v[i].max, fx->ranges.v[i].max_bytes, true);
}

/* ---- STATS (doc/protocol.md §5.8) --------------------------------------- */

struct stat_ent {
	char name[64];
	uint64_t value;
};

static int stat_cmp(const void *a, const void *b)
{
	return strcmp(((const struct stat_ent *)a)->name, ((const struct stat_ent *)b)->name);
}

void kv_srv__stats_reply(struct kv_server *s, struct srv_conn *c, uint64_t request_id)
{
	struct stat_ent ents[160];
	size_t n = 0;
#define STAT(nm, v)                                                               \
	do {                                                                      \
		if (n < sizeof ents / sizeof ents[0]) {                           \
			snprintf(ents[n].name, sizeof ents[n].name, "%s", (nm)); \
			ents[n++].value = (uint64_t)(v);                          \
		}                                                                 \
	} while (0)
	for (uint16_t t = 0; t < sizeof s->c.by_type / sizeof s->c.by_type[0]; t++) {
		const char *tn = kv_msg_type_name(t);
		if (tn == NULL || kv_msg_type_is_handshake(t))
			continue;
		char name[64];
		size_t k = 0;
		for (; tn[k] != '\0' && k < 40; k++)
			name[k] = (char)(tn[k] >= 'A' && tn[k] <= 'Z' ? tn[k] - 'A' + 'a' : tn[k]);
		name[k] = '\0';
		bool request = kv_msg_reply_type(t) != KV_MSG_NONE;
		snprintf(name + k, sizeof name - k, "%s", request ? "_requests" : "_received");
		STAT(name, s->c.by_type[t]);
	}
	size_t open_conns = 0;
	for (struct srv_conn *x = s->conns; x != NULL; x = x->next)
		open_conns++;
	STAT("unknown_type_requests", s->c.unknown_type);
	STAT("errors_sent", s->c.errors_sent);
	STAT("connections_accepted", s->c.connections_accepted);
	STAT("connections_open", open_conns);
	STAT("bad_frames", s->c.bad_frames);
	STAT("auth_failures", s->c.auth_failures);
	STAT("peer_connects", s->c.peer_connects);
	STAT("peer_failures", s->c.peer_failures);
	STAT("fast_failovers", s->c.fast_failovers);
	STAT("idle_closed", s->c.idle_closed);
	STAT("reads_inline", s->c.reads_inline);
	STAT("reads_pool", s->c.reads_pool);
	STAT("commits_loop", s->c.commits_loop);
	STAT("commits_handed", s->c.commits_handed);
	STAT("frames_sent", s->c.frames_sent);
	STAT("socket_writes", s->c.socket_writes);
	STAT("ops_in_flight", kv_node_ops_in_flight(&s->node));
	STAT("epoch", s->epoch);
	struct kv_node_stats ns;
	kv_node_get_stats(&s->node, &ns);
	STAT("chunk_read_repairs", ns.chunk_read_repairs);
	STAT("chunk_damaged_replaced", ns.chunk_damaged_replaced);
	struct kv_lsm_stats ls;
	kv_lsm_get_stats(s->db, &ls);
	STAT("lsm_user_bytes", ls.user_bytes);
	STAT("lsm_wal_bytes", ls.wal_bytes);
	STAT("lsm_wal_syncs", ls.wal_syncs);
	STAT("lsm_write_groups", ls.write_groups);
	STAT("lsm_writes", ls.writes);
	STAT("lsm_live_bytes", ls.live_bytes);
	STAT("lsm_memtable_bytes", ls.memtable_bytes);
	STAT("lsm_flushes", ls.flushes);
	STAT("lsm_logs_recycled", ls.logs_recycled);
	STAT("lsm_spare_logs", ls.spare_logs);
	STAT("lsm_logs_ready", ls.logs_ready);
	STAT("lsm_next_log_ready", ls.next_log_ready);
	STAT("lsm_flush_bytes", ls.flush_bytes);
	STAT("lsm_compactions", ls.compactions);
	STAT("lsm_compaction_bytes_read", ls.compaction_bytes_read);
	STAT("lsm_compaction_bytes_written", ls.compaction_bytes_written);
	STAT("lsm_cache_hits", ls.cache_hits);
	STAT("lsm_cache_misses", ls.cache_misses);
	STAT("lsm_bloom_skips", ls.bloom_skips);
	STAT("lsm_stalls", ls.stalls);
	STAT("lsm_quarantined", ls.quarantined);
	STAT("lsm_background_errors", ls.background_error != 0);
	struct kv_chunkstore_stats cst;
	kv_chunkstore_get_stats(s->chunks, &cst);
	STAT("chunkstore_puts", cst.puts);
	STAT("chunkstore_puts_existing", cst.puts_existing);
	STAT("chunkstore_bytes_written", cst.bytes_written);
	STAT("chunkstore_gets", cst.gets);
	STAT("chunkstore_deletes", cst.deletes);
	for (unsigned l = 0; l < KV_LSM_LEVELS; l++) {
		char name[32];
		snprintf(name, sizeof name, "lsm_tables_l%u", l);
		STAT(name, ls.tables[l]);
	}
#undef STAT
	qsort(ents, n, sizeof ents[0], stat_cmp);
	struct kv_msg m;
	kv_msg_init(&m, KV_MSG_STATS_REPLY);
	for (size_t i = 0; i < n; i++)
		if (kv_msg_stats_push(&m, kv_slice_str(ents[i].name), ents[i].value) != 0)
			break;
	(void)kv_srv__conn_send(c, &m, request_id);
	kv_msg_release(&m);
}

/* ---- Start and stop ----------------------------------------------------- */

void kv_srv__maybe_finish(struct kv_server *s)
{
	if (!s->stopping || s->work_inflight > 0 || s->writes_inflight > 0)
		return;
	if (!uv_is_closing((uv_handle_t *)&s->done_async))
		uv_close((uv_handle_t *)&s->done_async, NULL);
	if (!uv_is_closing((uv_handle_t *)&s->stop_async))
		uv_close((uv_handle_t *)&s->stop_async, NULL);
}

static void stop_async_cb(uv_async_t *h)
{
	struct kv_server *s = h->data;
	if (s->stopping)
		return;
	s->stopping = true;
	kv_info("node %s: stopping", s->self_name);
	kv_srv__net_stop(s);
	timers_close_all(s);
	/* Writes deferred to a commit round that will not come. */
	s->writes_deferred = false;
	kv_lsm_commit_kick(s->db);
	kv_srv__maybe_finish(s);
}

static void loop_thread(void *arg)
{
	struct kv_server *s = arg;
	s->loop_tid = pthread_self();
	uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* Closes every handle still open and runs the loop until they are gone. */
static int loop_shutdown(struct kv_server *s)
{
	kv_srv__net_close_handles(s);
	timers_close_all(s);
	if (!uv_is_closing((uv_handle_t *)&s->done_async))
		uv_close((uv_handle_t *)&s->done_async, NULL);
	if (!uv_is_closing((uv_handle_t *)&s->stop_async))
		uv_close((uv_handle_t *)&s->stop_async, NULL);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return uv_loop_close(&s->loop);
}

static int check_options(struct kv_server *s, char *err, size_t errlen)
{
	const struct kv_server_options *o = &s->o;
	bool self = false;
	if (o->n_members == 0 || o->n_members > KV_SERVER_MAX_MEMBERS) {
		snprintf(err, errlen, "no members: give --members ID=HOST:PORT,...");
		return KV_EINVAL;
	}
	for (size_t i = 0; i < o->n_members; i++) {
		if (o->members[i].id == 0) {
			snprintf(err, errlen, "member ids start at 1");
			return KV_EINVAL;
		}
		if (o->members[i].id == o->node_id)
			self = true;
	}
	if (!self) {
		snprintf(err, errlen, "--node-id %" PRIu32 " is not one of the members", o->node_id);
		return KV_EINVAL;
	}
	if (o->data_dir[0] == '\0') {
		snprintf(err, errlen, "no data directory: give --data DIR");
		return KV_EINVAL;
	}
	if (o->n == 0 || o->n > KV_MSG_QUORUM_MAX || o->r == 0 || o->w == 0 || o->r > o->n ||
	    o->w > o->n) {
		snprintf(err, errlen, "bad quorums: want 1 <= r, w <= n <= %d", KV_MSG_QUORUM_MAX);
		return KV_EINVAL;
	}
	if (o->cluster[0] == '\0' || strlen(o->cluster) > KV_MSG_NAME_ID_MAX ||
	    strspn(o->cluster, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
		    strlen(o->cluster)) {
		snprintf(err, errlen, "bad cluster name \"%s\": 1-64 of [A-Za-z0-9._-]", o->cluster);
		return KV_EINVAL;
	}
	s->n = o->n < o->n_members ? o->n : (uint32_t)o->n_members;
	s->r = o->r < s->n ? o->r : s->n;
	s->w = o->w < s->n ? o->w : s->n;
	return 0;
}

/*
 * Decides the epoch (DESIGN §4 "Actors"; doc/node.md "Epochs") and the
 * counter lease to resume from, and writes the NODE file.
 */
static int open_state(struct kv_server *s, const struct kv_lsm_open_report *rep,
		      struct node_state *st, uint64_t *lease_out, char *err, size_t errlen)
{
	const char *dir = s->o.data_dir;
	uint32_t epoch = 1;
	const char *why = NULL;
	*lease_out = 0;
	if (st->present) {
		epoch = st->epoch;
		if (rep->possible_loss) {
			epoch++;
			why = "recovery reported possible loss";
		} else if (running_marker_present(dir)) {
			/* DESIGN §4 "Who mints a dot": a shipped dot's local
			 * write may be lost (doc/node.md "Epochs"). */
			epoch++;
			why = "the last stop was unclean (RUNNING was left behind)";
		}
	}
	struct kv_buf val = KV_BUF_INIT;
	int rc = kv_lsm_get(s->db, NULL, kv_node_lease_skey(), &val);
	if (rc == 0) {
		uint32_t lepoch;
		uint64_t lease;
		if (kv_node_lease_decode(kv_buf_slice(&val), &lepoch, &lease) != 0) {
			epoch++;
			why = "the counter lease record is unreadable";
		} else if (lepoch > epoch) {
			/* The NODE file is behind the lease: never reuse that epoch. */
			epoch = lepoch + 1;
			why = "the counter lease names a later epoch than NODE";
		} else if (lepoch == epoch) {
			*lease_out = lease;
		}
	} else if (rc != KV_ENOTFOUND) {
		snprintf(err, errlen, "cannot read the counter lease: %s", kv_strerror(rc));
		kv_buf_release(&val);
		return rc;
	}
	kv_buf_release(&val);
	if (why != NULL) {
		*lease_out = 0;
		kv_warn("node %s: new epoch %" PRIu32 ": %s", s->self_name, epoch, why);
	}
	st->present = true;
	st->node_id = s->o.node_id;
	st->n = s->n;
	st->epoch = epoch;
	snprintf(st->cluster, sizeof st->cluster, "%s", s->o.cluster);
	rc = node_state_write(dir, st);
	if (rc == 0)
		rc = running_marker_set(dir, s->o.sync);
	if (rc != 0) {
		snprintf(err, errlen, "cannot write %s/%s: %s", dir, NODE_FILE, kv_strerror(rc));
		return rc;
	}
	s->epoch = epoch;
	return 0;
}

static int open_engine(struct kv_server *s, struct kv_lsm_open_report *rep, char *err,
		       size_t errlen)
{
	struct kv_lsm_options lo;
	kv_lsm_options_init(&lo);
	int rc = kv_lsm_parse_sync(s->o.sync, &lo.sync, &lo.sync_batch_ms);
	if (rc != 0) {
		snprintf(err, errlen, "bad sync policy \"%s\": want always, batch:MS or none",
			 s->o.sync);
		return rc;
	}
	if (s->o.memtable_bytes)
		lo.memtable_bytes = s->o.memtable_bytes;
	lo.background_bytes_per_sec = s->o.background_bytes_per_sec;
	lo.block_cache_bytes = s->o.cache_bytes;
	char path[4200];
	rc = path_join(path, sizeof path, s->o.data_dir, "db");
	if (rc == 0)
		rc = kv_lsm_open(path, &lo, &s->db, rep);
	if (rc != 0) {
		snprintf(err, errlen, "cannot open the storage engine in %s: %s%s", path,
			 kv_strerror(rc),
			 rc == KV_EBUSY ? " (is another kvfsd using this data directory?)" : "");
		s->db = NULL;
	}
	return rc;
}

/* ---- The chunk store (doc/node.md "Chunks and reclamation") ------------ */

struct adopt_state {
	struct kv_server *s;
	int64_t now;
	uint64_t adopted, dropped;
};

/*
 * A body without a record (a crash between the body and its record, or
 * within a sweep, which deletes the record first) is adopted: checked
 * against its hash and given a record aged now, so marks keep it when a
 * file needs it and the sweep reclaims it a grace later when none does.
 * A body that fails its check is removed: no record names it.
 */
static int adopt_one(void *arg, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN])
{
	struct adopt_state *a = arg;
	struct kv_server *s = a->s;
	struct kv_buf key = KV_BUF_INIT, value = KV_BUF_INIT, body = KV_BUF_INIT;
	int rc = kv_node_chunk_record_encode(hash, 0, 0, &key, &value);
	if (rc == 0)
		rc = kv_lsm_get(s->db, NULL, kv_buf_slice(&key), &body);
	if (rc != KV_ENOTFOUND)
		goto out; /* 0: it has its record */
	rc = kv_chunkstore_get(s->chunks, hash, &body);
	/* Either stored form (node/node.h); checked against the content hash
	 * either way (kv_chunk_hash_check): a rare path, and a body without a
	 * record was never acknowledged. */
	struct kv_slice bytes = kv_slice_make(NULL, 0);
	if (rc == 0 && kv_node_chunk_body_split(kv_buf_slice(&body), &bytes) < 0)
		rc = KV_ECORRUPT;
	if (rc == 0) {
		int ok = kv_chunk_hash_check(hash, bytes.p, bytes.n);
		rc = ok < 0 ? ok : ok ? 0 : KV_ECORRUPT;
	}
	if (rc == KV_ECORRUPT) {
		rc = kv_chunkstore_delete(s->chunks, hash);
		a->dropped++;
		goto out;
	}
	if (rc != 0)
		goto out;
	kv_buf_reset(&key);
	kv_buf_reset(&value);
	rc = kv_node_chunk_record_encode(hash, (uint32_t)bytes.n, a->now,
					 &key, &value);
	if (rc == 0)
		rc = kv_lsm_put(s->db, kv_buf_slice(&key), kv_buf_slice(&value));
	if (rc == 0)
		a->adopted++;
out:
	kv_buf_release(&key);
	kv_buf_release(&value);
	kv_buf_release(&body);
	return rc == KV_ENOTFOUND ? 0 : rc;
}

/*
 * The other direction: a record whose body is gone (removed by hand, lost
 * by a disk) would make every later store of that chunk a mere age refresh,
 * so this replica would never hold it again. Such records are deleted: the
 * next store writes the body again. Bodies an older kvfsd kept in the
 * engine count as present. Returns 0 or an engine error; *dropped counts.
 */
static int drop_bodiless_records(struct kv_server *s, uint64_t *dropped)
{
	static const uint8_t lo[4] = { 0, 0, 0, 1 }, hi[4] = { 0, 0, 0, 2 };
	struct kv_lsm_iter_options io;
	memset(&io, 0, sizeof io);
	io.lower = kv_slice_make(lo, sizeof lo);
	io.upper = kv_slice_make(hi, sizeof hi);
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	struct kv_iter *it = b != NULL ? kv_lsm_iter(s->db, &io) : NULL;
	struct kv_buf ckey = KV_BUF_INIT, val = KV_BUF_INIT;
	int rc = it == NULL ? -ENOMEM : 0;
	*dropped = 0;
	if (it != NULL)
		kv_iter_seek_first(it);
	for (; rc == 0 && it != NULL && kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice k = kv_iter_key(it);
		/* node.h: 00 00 00 01 ‖ hash ‖ 00 */
		if (k.n != KV_NODE_CHUNK_RECORD_KEY_LEN)
			continue;
		const uint8_t *hash = k.p + 4;
		if (kv_chunkstore_exists(s->chunks, hash) != KV_ENOTFOUND)
			continue;
		uint8_t chunk_key[KV_NODE_CHUNK_KEY_LEN] = { 0, 'c' };
		memcpy(chunk_key + 2, hash, KV_NODE_CHUNK_HASH_LEN);
		kv_buf_reset(&ckey);
		rc = kv_skey_encode(&ckey, kv_slice_make(chunk_key, sizeof chunk_key));
		int g = rc == 0 ? kv_lsm_get(s->db, NULL, kv_buf_slice(&ckey), &val) : rc;
		if (g == 0)
			continue; /* a body in the engine */
		if (g != KV_ENOTFOUND) {
			rc = g;
			break;
		}
		rc = kv_lsm_batch_delete(b, k);
		(*dropped)++;
	}
	if (rc == 0 && it != NULL)
		rc = kv_iter_status(it);
	if (it != NULL)
		kv_iter_destroy(it);
	if (rc == 0 && *dropped > 0)
		rc = kv_lsm_write(s->db, b);
	if (b != NULL)
		kv_lsm_batch_free(b);
	kv_buf_release(&ckey);
	kv_buf_release(&val);
	return rc;
}

/*
 * Opens DATA/chunks. After an unclean stop (@unclean: RUNNING was left
 * behind) the bodies and the records are checked against each other, both
 * ways (doc/storage-format.md "Chunk store"); a clean stop leaves them
 * consistent, so a clean start skips the scan.
 */
static int open_chunks(struct kv_server *s, bool unclean, char *err, size_t errlen)
{
	char path[4200];
	struct kv_chunkstore_open_report rep;
	size_t max = s->o.max_value > ((size_t)4 << 20) ? s->o.max_value : (size_t)4 << 20;
	int rc = path_join(path, sizeof path, s->o.data_dir, "chunks");
	if (rc == 0)
		rc = kv_chunkstore_open(kv_vfs_posix(), path, max, &s->chunks, &rep);
	if (rc != 0) {
		snprintf(err, errlen, "cannot open the chunk store in %s: %s", path,
			 kv_strerror(rc));
		return rc;
	}
	enum kv_sync_mode mode;
	unsigned batch_ms;
	if (kv_lsm_parse_sync(s->o.sync, &mode, &batch_ms) == 0 && mode == KV_SYNC_NONE)
		kv_chunkstore_set_sync(s->chunks, false);
	if (rep.temps_removed || rep.strays)
		kv_info("node %s: chunk store: %" PRIu64 " unfinished writes removed, %" PRIu64
			" unknown names left alone", s->self_name, rep.temps_removed, rep.strays);
	if (!unclean)
		return 0;
	struct adopt_state a = { .s = s, .now = (int64_t)kv_wall_ns() };
	uint64_t bodiless = 0;
	rc = kv_chunkstore_each(s->chunks, adopt_one, &a);
	if (rc == 0)
		rc = drop_bodiless_records(s, &bodiless);
	if (rc != 0) {
		snprintf(err, errlen, "cannot check the chunk store in %s against its records: %s",
			 path, kv_strerror(rc));
		return rc;
	}
	if (a.adopted || a.dropped || bodiless)
		kv_warn("node %s: chunk store: %" PRIu64 " bodies without a record adopted, %" PRIu64
			" damaged ones removed, %" PRIu64 " records without a body removed",
			s->self_name, a.adopted, a.dropped, bodiless);
	return 0;
}

static int init_node(struct kv_server *s, uint64_t lease)
{
	struct kv_node_member *mem = calloc(s->o.n_members, sizeof *mem);
	char (*names)[16] = calloc(s->o.n_members, sizeof *names);
	int rc = -ENOMEM;
	if (mem == NULL || names == NULL)
		goto out;
	for (size_t i = 0; i < s->o.n_members; i++) {
		snprintf(names[i], sizeof names[i], "%" PRIu32, s->o.members[i].id);
		mem[i].id = s->o.members[i].id;
		mem[i].name = names[i];
		mem[i].weight = s->o.members[i].weight;
	}
	struct kv_node_config cfg;
	kv_node_config_default(&cfg);
	cfg.self_id = s->o.node_id;
	cfg.epoch = s->epoch;
	cfg.members = mem;
	cfg.n_members = s->o.n_members;
	cfg.n = s->n;
	cfg.r = s->r;
	cfg.w = s->w;
	cfg.request_timeout_ns = (uint64_t)s->o.timeout_ms * 1000000u;
	cfg.forward_timeout_ns = (uint64_t)s->o.forward_timeout_ms * 1000000u;
	cfg.limits.max_value = s->o.max_value;
	cfg.counter_lease = lease;
	kv_rng_seed(&cfg.rng, kv_wall_ns() ^ ((uint64_t)s->o.node_id << 32));
	rc = kv_node_init(&s->node, &cfg);
	s->node_ready = rc == 0;
out:
	free(mem);
	free(names);
	return rc;
}

static void server_free(struct kv_server *s)
{
	if (s->node_ready)
		kv_node_release(&s->node);
	kv_effects_release(&s->fx);
	free(s->synth);
	if (s->peers != NULL) {
		for (size_t i = 0; i < s->npeers; i++) {
			kv_buf_release(&s->peers[i].pending);
			free(s->peers[i].out);
		}
		free(s->peers);
	}
	pthread_mutex_destroy(&s->done_lock);
	if (s->own_log_sink) {
		kv_log_set_sink(NULL, NULL);
		fclose(s->log_file);
	}
	kv_auth_secret_release(&s->o.secret);
	free(s);
}

int kv_server_start(const struct kv_server_options *o, struct kv_server **out, char *err,
		    size_t errlen)
{
	int rc;
	bool loop_up = false;
	struct kv_lsm_open_report rep;
	struct node_state st;
	uint64_t lease = 0;
	*out = NULL;
	snprintf(err, errlen, "unknown error");
	struct kv_server *s = calloc(1, sizeof *s);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->done_lock, NULL);
	kv_effects_init(&s->fx);
	s->o = *o;
	snprintf(s->self_name, sizeof s->self_name, "%" PRIu32, o->node_id);
	kv_msg_limits_default(&s->limits);
	s->limits.max_value = o->max_value ? o->max_value : s->limits.max_value;
	if (s->o.max_conn_queue_bytes == 0)
		s->o.max_conn_queue_bytes = (size_t)64 << 20;
	if (s->o.idle_timeout_ms == 0)
		s->o.idle_timeout_ms = 10000;
	if (s->o.connect_timeout_ms == 0)
		s->o.connect_timeout_ms = 1000;
	if (s->o.timeout_ms == 0)
		s->o.timeout_ms = 5000;
	if (s->o.forward_timeout_ms == 0)
		s->o.forward_timeout_ms = 1000;

	if (o->log_file[0] != '\0') {
		FILE *f = fopen(o->log_file, "a");
		if (f == NULL) {
			rc = -errno;
			snprintf(err, errlen, "cannot open log file %s: %s", o->log_file,
				 strerror(errno));
			goto out;
		}
		s->log_file = f;
		s->own_log_sink = true;
		kv_log_set_sink(file_sink, f);
	}
	kv_log_set_level((enum kv_log_level)o->log_level);
	if (kv_auth_init() != 0) {
		rc = -EIO;
		snprintf(err, errlen, "cannot initialize libsodium");
		goto out;
	}
	rc = check_options(s, err, errlen);
	if (rc != 0)
		goto out;
	if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "cannot create data directory %s: %s", o->data_dir,
			 strerror(errno));
		goto out;
	}
	if (access(o->data_dir, R_OK | W_OK | X_OK) != 0) {
		rc = -errno;
		snprintf(err, errlen, "data directory %s is not usable: %s", o->data_dir,
			 strerror(errno));
		goto out;
	}
	rc = node_state_read(o->data_dir, &st, err, errlen);
	if (rc != 0)
		goto out;
	if (st.present && st.node_id != o->node_id) {
		rc = KV_EINVAL;
		snprintf(err, errlen, "%s belongs to node %" PRIu32 ", not --node-id %" PRIu32,
			 o->data_dir, st.node_id, o->node_id);
		goto out;
	}
	if (st.present && strcmp(st.cluster, o->cluster) != 0) {
		rc = KV_EINVAL;
		snprintf(err, errlen, "%s belongs to cluster \"%s\", not \"%s\"", o->data_dir,
			 st.cluster, o->cluster);
		goto out;
	}
	if (st.present && st.n != s->n) {
		rc = KV_EINVAL;
		snprintf(err, errlen, "--n %" PRIu32 " disagrees with this node's data (N=%" PRIu32 ")",
			 s->n, st.n);
		goto out;
	}
	rc = open_engine(s, &rep, err, errlen);
	if (rc != 0)
		goto out;
	if (rep.possible_loss || rep.wal_torn_tail)
		kv_info("node %s: recovery: %" PRIu64 " WAL records, %" PRIu64
			" bytes skipped, %u tables quarantined", s->self_name, rep.wal_records,
			rep.wal_bytes_skipped, rep.tables_quarantined);
	rc = open_chunks(s, running_marker_present(o->data_dir) != 0, err, errlen);
	if (rc != 0)
		goto out;
	rc = open_state(s, &rep, &st, &lease, err, errlen);
	if (rc != 0)
		goto out;
	rc = init_node(s, lease);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the node core: %s", kv_strerror(rc));
		goto out;
	}

	rc = uv_loop_init(&s->loop);
	if (rc != 0) {
		snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
		goto out;
	}
	loop_up = true;
	uv_async_init(&s->loop, &s->stop_async, stop_async_cb);
	s->stop_async.data = s;
	uv_async_init(&s->loop, &s->done_async, kv_srv__done_async_cb);
	s->done_async.data = s;
	rc = kv_srv__net_start(s, err, errlen);
	if (rc != 0)
		goto out;
	rc = uv_thread_create(&s->thread, loop_thread, s);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the node thread: %s", uv_strerror(rc));
		goto out;
	}
	s->thread_started = true;
	kv_info("node %s: listening on %s:%u (epoch %" PRIu32 ", N=%" PRIu32 ", R=%" PRIu32
		", W=%" PRIu32 ", sync=%s)", s->self_name, o->listen_host, s->port, s->epoch,
		s->n, s->r, s->w, o->sync);
	*out = s;
	return 0;
out:
	if (loop_up && loop_shutdown(s) != 0)
		kv_error("node %s: uv_loop_close failed after a failed start", s->self_name);
	if (s->db != NULL) {
		running_marker_clear(o->data_dir); /* nothing ran */
		kv_lsm_close(s->db);
	}
	kv_chunkstore_close(s->chunks);
	server_free(s);
	return rc;
}

int kv_server_stop(struct kv_server *s)
{
	if (s == NULL)
		return 0;
	uv_async_send(&s->stop_async);
	uv_thread_join(&s->thread);
	/* The thread is gone: the loop is ours now. */
	int rc = loop_shutdown(s);
	if (rc != 0)
		kv_error("node %s: uv_loop_close: %s", s->self_name, uv_strerror(rc));
	int rc2 = kv_lsm_close(s->db);
	kv_chunkstore_close(s->chunks);
	s->chunks = NULL;
	if (rc2 != 0)
		kv_error("node %s: closing the storage engine: %s", s->self_name,
			 kv_strerror(rc2));
	else if (kv_node_actor_tainted(&s->node))
		/* A shipped put's local write failed: RUNNING stays, so the
		 * next start takes a new epoch (doc/node.md "Epochs"). */
		kv_warn("node %s: a local write failed after its put was shipped; "
			"the next start takes a new epoch", s->self_name);
	else
		running_marker_clear(s->o.data_dir);
	kv_info("node %s: stopped", s->self_name);
	server_free(s);
	return rc2 != 0 ? rc2 : rc;
}
