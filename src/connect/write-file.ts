/**
 * Writes a connection file the way a reader never sees half of it: into a temporary file in the
 * same directory (mode 0600 from the start: it holds the HMAC key), flushed, then renamed over the
 * target. A failure removes the temporary file and leaves any previous file as it was.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ConnectError } from "./core/connection.ts";

/** Creates `dir` (and parents) with mode 0700 when missing, as IPython's ProfileDir does for security/. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConnectError(`cannot create the profile's security directory ${dir}: ${(err as Error).message}`);
  }
}

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  let fh;
  try {
    fh = await open(tmp, "wx", 0o600);
  } catch (err) {
    throw new ConnectError(`cannot write into ${dirname(path)}: ${(err as Error).message}`);
  }
  try {
    await fh.writeFile(content, "utf8");
    await fh.sync();
    await fh.close();
    fh = undefined;
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw new ConnectError(`cannot write ${path}: ${(err as Error).message}`);
  }
}
