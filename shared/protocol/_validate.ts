/**
 * Small checkers that turn untrusted decoded JSON into typed values or throw a
 * {@linkcode ProtocolError} naming the field. Private to the protocol folder.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** A plain JSON object whose fields are not yet checked. */
export type Fields = Record<string, unknown>;

function fail(field: string, why: string): never {
  throw new ProtocolError("malformed-message", `Field "${field}" ${why}`);
}

/** Checks that a value is a plain object. */
export function object(value: unknown, field: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(field, "must be an object");
  }
  return value as Fields;
}

/** Reads a string field no longer than `max` characters. */
export function string(fields: Fields, key: string, max = 1024): string {
  const value = fields[key];
  if (typeof value !== "string") fail(key, "must be a string");
  if (value.length > max) fail(key, `is longer than ${max} characters`);
  return value;
}

/** Reads an optional string field. */
export function optionalString(fields: Fields, key: string, max = 1024): string | undefined {
  return fields[key] === undefined ? undefined : string(fields, key, max);
}

/** Reads an integer field within `[min, max]`. */
export function integer(
  fields: Fields,
  key: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = fields[key];
  if (typeof value !== "number" || !Number.isInteger(value)) fail(key, "must be an integer");
  if (value < min || value > max) fail(key, `must be between ${min} and ${max}`);
  return value;
}

/** Reads an optional integer field within `[min, max]`. */
export function optionalInteger(
  fields: Fields,
  key: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  return fields[key] === undefined ? undefined : integer(fields, key, min, max);
}

/** Reads a finite number field within `[min, max]`. */
export function number(fields: Fields, key: string, min = 0, max = Number.MAX_VALUE): number {
  const value = fields[key];
  if (typeof value !== "number" || !Number.isFinite(value)) fail(key, "must be a number");
  if (value < min || value > max) fail(key, `must be between ${min} and ${max}`);
  return value;
}

/** Reads a boolean field. */
export function boolean(fields: Fields, key: string): boolean {
  const value = fields[key];
  if (typeof value !== "boolean") fail(key, "must be true or false");
  return value;
}

/** Reads an array field of at most `max` items, checking each with `item`. */
export function array<T>(
  fields: Fields,
  key: string,
  max: number,
  item: (value: unknown, field: string) => T,
): T[] {
  const value = fields[key];
  if (!Array.isArray(value)) fail(key, "must be an array");
  if (value.length > max) fail(key, `has more than ${max} items`);
  return value.map((entry, index) => item(entry, `${key}[${index}]`));
}

/** Reads a string field that must be one of `choices`. */
export function oneOf<T extends string>(fields: Fields, key: string, choices: readonly T[]): T {
  const value = string(fields, key, 64);
  if (!(choices as readonly string[]).includes(value)) {
    fail(key, `must be one of ${choices.join(", ")}`);
  }
  return value as T;
}
