import type { BenchContext } from "./_context.ts";
import type { GroupResult } from "./report.ts";

/** Stub. */
export function runChat(_ctx: BenchContext): Promise<GroupResult> {
  return Promise.resolve({ title: "chat", method: [], figures: [], findings: [], seconds: 0 });
}
