/**
 * Test helpers that look at processes through Linux's /proc: children by program name, open
 * file descriptors and sockets, resident memory. Tests that use them are skipped elsewhere.
 *
 * @module
 */

/** Whether /proc can be read here (Linux). */
export const HAS_PROC: boolean = (() => {
  try {
    Deno.statSync("/proc/self/status");
    return true;
  } catch {
    return false;
  }
})();

/** Field 4 of /proc/PID/stat (the parent pid), and the program name (field 2). */
function readStat(pid: number): { ppid: number; comm: string } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined; // Gone between listing and reading.
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const comm = text.slice(open + 1, close);
  const rest = text.slice(close + 2).split(" ");
  return { ppid: Number(rest[1]), comm };
}

/** Pids of the direct children of `parent` whose program name is `program`. */
export function childrenNamed(program: string, parent: number = Deno.pid): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readStat(Number(entry.name));
    if (stat && stat.ppid === parent && stat.comm === program) found.push(Number(entry.name));
  }
  return found;
}

/** How many ffmpeg processes `parent` (this process by default) has running. */
export function ffmpegChildren(parent: number = Deno.pid): number {
  return childrenNamed("ffmpeg", parent).length;
}

/** The targets of a process's open file descriptors (e.g. `socket:[123]`, `/dev/null`). */
export function openFds(pid: number | "self" = "self"): string[] {
  const targets: string[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      targets.push(Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`));
    } catch {
      // Closed while listing (the listing's own descriptor, for one).
    }
  }
  return targets;
}

/** How many sockets a process has open. */
export function openSockets(pid: number | "self" = "self"): number {
  return openFds(pid).filter((target) => target.startsWith("socket:")).length;
}

/** Resident memory of a process in bytes (VmRSS). */
export function rssBytes(pid: number | "self" = "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`No VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

/** Bytes as MiB with one decimal, for messages. */
export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
