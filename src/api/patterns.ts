/**
 * String patterns shared by the schemas. Every field whose value can reach a remote shell (qsub
 * arguments, job script lines, ssh command lines) uses one of the "shell-safe" patterns below, which
 * leave out every shell metacharacter: ; & | $ ` < > ( ) { } [ ] ' " \ * ? ! # ~ and newlines. The
 * API server reports a mismatch with the field's path, and parseEngineCluster names the field too.
 */

/** RFC 1123 DNS subdomain: the name of a Secret, ConfigMap, ... */
export const DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/** A host name or an IPv4 address (no IPv6 literal: keeps ssh/qsub command lines unambiguous). */
export const HOSTNAME = "^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$";
/** A POSIX-ish user name. */
export const USERNAME = "^[A-Za-z_][A-Za-z0-9_.-]*$";
/** A queue, account or module-ish word: letters, digits and `_ . - @ / + :`. */
export const SHELL_WORD = "^[A-Za-z0-9_.@/+:=-]+$";
/** PBS walltime: `HH:MM:SS`, `MM:SS` or seconds. */
export const WALLTIME = "^[0-9]+(:[0-5][0-9]){0,2}$";
/** A PBS Pro select statement, e.g. `2:ncpus=8:mpiprocs=8:mem=16gb`. */
export const SELECT = "^[A-Za-z0-9_.:=+-]+$";
/**
 * One line of words separated by single spaces, each word from the shell-safe set (plus `,` and
 * `%`). Used for setup lines (`module load gcc/12`, `source /opt/env.sh`, `conda activate ipp`,
 * `export OMP_NUM_THREADS=1`) and extra directives (`-m abe`, `-l mem=4gb`): commands with
 * arguments only, no pipes, substitutions, redirections, globs or quoting.
 */
export const SHELL_LINE = "^[A-Za-z0-9_.@/+:=,%-]+( [A-Za-z0-9_.@/+:=,%-]+)*$";
/** A Kubernetes label/annotation key (optional DNS prefix, then a name). */
export const QUALIFIED_NAME = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/** An environment variable name. */
export const ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$";
/** A container image reference (registry/repo[:tag][@digest]); no spaces or shell characters. */
export const IMAGE = "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$";

export const re = (pattern: string): RegExp => new RegExp(pattern);
