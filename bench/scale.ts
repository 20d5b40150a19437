import type { BenchContext } from "./_context.ts";
import type { GroupResult } from "./report.ts";

/** Stub. */
export function runScale(_ctx: BenchContext): Promise<GroupResult> {
  return Promise.resolve({ title: "scale", method: [], figures: [], findings: [], seconds: 0 });
}
