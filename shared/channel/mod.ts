export * from "./primitives.ts";
export * from "./cipher_state.ts";
export * from "./symmetric_state.ts";
export * from "./patterns.ts";
export * from "./handshake_state.ts";
