/*
 * config.h - kvfsd's options: command-line flags and the kvfs.conf file
 * (issue 4, DESIGN §9 "Operating it"). Every config key has the flag of the
 * same name (`node-id = 2` <-> `--node-id 2`); flags override the file.
 *
 * Reference: man/kvfsd.8 (flags), man/kvfs.conf.5 (the file, every key).
 */
#ifndef KV_NODE_CONFIG_H
#define KV_NODE_CONFIG_H

#include <stddef.h>

#include "node/server.h"

/* Positive results of kv_config_parse_args(): the caller prints and exits 0. */
#define KV_CONFIG_HELP 1    /* --help or -h was given: print kv_config_usage() */
#define KV_CONFIG_VERSION 2 /* --version was given */

/* The largest config file line, and the largest config file, accepted. */
#define KV_CONFIG_LINE_MAX 8192
#define KV_CONFIG_FILE_MAX ((size_t)1 << 20)

/*
 * Parses kvfsd's command line into @o, which the caller has filled with
 * kv_server_options_default() (its values are the defaults). @argv[0] is
 * the program name. `--config FILE` is read first, wherever it stands;
 * then the other flags, in order, override it (a flag given twice: the
 * last wins). Flags are `--key value` or `--key=value`.
 *
 * Then the result is completed and checked as a whole: without --members
 * the node is a one-member cluster of itself at its listen address with
 * N = R = W = 1; with --members and no --listen it listens at its member
 * address; N, R and W left at their defaults are capped to what the member
 * list allows (explicit values never are: they are refused); the secret
 * file is read into o->secret.
 *
 * Returns 0 when @o is ready for kv_server_start(); KV_CONFIG_HELP or
 * KV_CONFIG_VERSION (nothing else was checked); or a negative error
 * (KV_EINVAL for a bad option or value, -errno or KV_E* when a file could
 * not be read) with one line in @err that names the key, and file:line
 * when the value came from the config file. @o is then unspecified.
 * @err must hold at least 256 bytes to be useful; it is always
 * NUL-terminated when @errlen > 0.
 */
int kv_config_parse_args(struct kv_server_options *o, int argc, char **argv, char *err,
			 size_t errlen);

/*
 * Reads the config file @path into @o (filled with defaults or earlier
 * settings) and completes and checks the result exactly as
 * kv_config_parse_args() does for a command line of `--config @path`.
 * Returns 0 or a negative error with one line in @err, as above.
 */
int kv_config_load_file(struct kv_server_options *o, const char *path, char *err,
			size_t errlen);

/* kvfsd's --help text (static; ends with a newline). */
const char *kv_config_usage(void);

#endif
