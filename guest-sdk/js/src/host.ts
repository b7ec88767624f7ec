// The one place the SDK meets componentize-js's conventions for WIT
// results: an import returning `result<T, E>` returns T or throws E
// (wrapped in an Error whose `payload` is E).

/** The `err` value of a result-returning import that threw, or undefined
 * when what was thrown is not one (a trap, a bug: let it through). */
export function errorPayload<E>(thrown: unknown, isPayload: (value: unknown) => value is E): E | undefined {
  if (typeof thrown === "object" && thrown !== null && "payload" in thrown) {
    const payload = (thrown as { payload: unknown }).payload;
    if (isPayload(payload)) return payload;
  }
  return isPayload(thrown) ? thrown : undefined;
}

export function hasStringFields<K extends string>(value: unknown, ...keys: K[]): value is Record<K, string> {
  return typeof value === "object" && value !== null && keys.every((key) => typeof (value as Record<string, unknown>)[key] === "string");
}
