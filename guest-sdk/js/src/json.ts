// JSON at the boundary: every payload crosses it as JSON text.
//
// `JSON.stringify` refuses a bigint and turns NaN into `null` silently;
// here a bigint is written as its exact digits (a u64 from
// `ctx.randomBigInt()` survives byte for byte, as in the Rust SDK) and a
// value JSON cannot carry is an error that names what was being encoded.

/** Any value `encodeJson` accepts. */
export type Json =
  | null
  | boolean
  | number
  | bigint
  | string
  | readonly Json[]
  | { readonly [key: string]: Json | undefined };

/** Compact JSON text of `value`, or a TypeError naming `what`. */
export function encodeJson(value: unknown, what: string): string {
  return encodeValue(value, what, "");
}

function encodeValue(value: unknown, what: string, path: string): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`${what} must be JSON-able: ${describePath(path)}is ${value} (JSON has no NaN or infinity)`);
      }
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      const withToJson = value as { toJSON?: unknown };
      if (typeof withToJson.toJSON === "function") {
        // Date and friends: what JSON.stringify would write.
        return encodeValue((withToJson.toJSON as () => unknown).call(value), what, path);
      }
      if (Array.isArray(value)) {
        return `[${value.map((item, index) => encodeValue(item === undefined ? null : item, what, `${path}[${index}]`)).join(",")}]`;
      }
      if (ArrayBuffer.isView(value)) {
        throw new TypeError(`${what} must be JSON-able: ${describePath(path)}is a ${value.constructor.name} (convert it with Array.from)`);
      }
      const fields: string[] = [];
      for (const [key, field] of Object.entries(value)) {
        if (field === undefined || typeof field === "function" || typeof field === "symbol") continue;
        fields.push(`${JSON.stringify(key)}:${encodeValue(field, what, `${path}.${key}`)}`);
      }
      return `{${fields.join(",")}}`;
    }
    default:
      throw new TypeError(`${what} must be JSON-able: ${describePath(path)}is ${typeof value === "undefined" ? "undefined" : `a ${typeof value}`}`);
  }
}

function describePath(path: string): string {
  return path === "" ? "it " : `\`${path.replace(/^\./, "")}\` `;
}

/** The value of JSON text, or undefined when `text` is not JSON. */
export function tryDecodeJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** Details from the wire: parsed when they are JSON, else the text. */
export function decodeDetails(detailsJson: string | undefined): unknown {
  if (detailsJson === undefined) return undefined;
  const decoded = tryDecodeJson(detailsJson);
  return decoded === undefined ? detailsJson : decoded.value;
}
