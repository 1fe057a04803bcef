/**
 * POSIX shell quoting for every value that reaches the login host's shell (ssh exec runs the
 * command line through the user's shell). The schema already restricts such fields to shell-safe
 * characters; quoting here is the second line of defence, so a value that slips past validation is
 * still passed as one literal word.
 */

/** Characters that never need quoting in a POSIX shell word. */
const PLAIN = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One shell word: plain words as they are, everything else in single quotes (`'` as `'\''`). */
export function shQuote(value: string): string {
  if (value !== "" && PLAIN.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A command line from argv, every word quoted. */
export function shJoin(argv: readonly string[]): string {
  return argv.map(shQuote).join(" ");
}
