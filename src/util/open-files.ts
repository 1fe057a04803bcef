/** The process's open-files limit (RLIMIT_NOFILE), from /proc/self/limits; null where there is none (not Linux). */
import { readFileSync } from "node:fs";
import type { OpenFilesLimit } from "../controller/core/open-files.ts";

export function readOpenFilesLimit(): OpenFilesLimit | null {
  let text: string;
  try {
    text = readFileSync("/proc/self/limits", "utf8");
  } catch {
    return null;
  }
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const cols = line?.slice("Max open files".length).trim().split(/\s+/);
  if (!cols || cols.length < 2) return null;
  const num = (s: string) => (s === "unlimited" ? Infinity : Number(s));
  const soft = num(cols[0]!);
  const hard = num(cols[1]!);
  return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard };
}
