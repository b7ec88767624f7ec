// Logging routed to the host's durable log (`durable.log`): each line is
// tied to the execution and muted while it replays work it already did, so
// a replay does not repeat its logs. `workflow()` routes `console.*` here
// too, each method at its level.

import { durable } from "./host.js";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const LEVELS: ReadonlySet<string> = new Set(["trace", "debug", "info", "warn", "error"]);

export function logLine(level: LogLevel, message: string): void {
  if (!LEVELS.has(level)) {
    throw new TypeError(`a log level is one of trace, debug, info, warn, error; got ${String(level)}`);
  }
  durable.log(level, String(message));
}

/** One argument of a console call as text: strings as they are, errors
 * with their stack, the rest as JSON where it can be. */
function formatArgument(argument: unknown): string {
  if (typeof argument === "string") return argument;
  if (argument instanceof Error) return argument.stack ? `${argument.name}: ${argument.message}\n${argument.stack}` : `${argument.name}: ${argument.message}`;
  if (typeof argument === "bigint") return `${argument}n`;
  if (typeof argument === "object" && argument !== null) {
    try {
      return JSON.stringify(argument, (_key, value: unknown) => (typeof value === "bigint" ? `${value}n` : value));
    } catch {
      return Object.prototype.toString.call(argument);
    }
  }
  return String(argument);
}

function formatLine(args: readonly unknown[]): string {
  return args.map(formatArgument).join(" ");
}

let consoleRouted = false;
/** The engine's own console.error (to stderr), kept when `console` is routed. */
let stderrLine: ((line: string) => void) | undefined;

/** A line on the guest's stderr (the host quotes the last of it when the
 * guest traps). */
export function writeStderr(line: string): void {
  const write = stderrLine ?? (globalThis as unknown as { console: { error(line: string): void } }).console.error;
  write(line);
}

/** Routes `console.log/info/debug/trace/warn/error` to the durable log.
 * Called when the workflow runs, never at import: componentize-js evaluates
 * the module at build time, when there is no host to log to. */
export function routeConsole(): void {
  if (consoleRouted) return;
  consoleRouted = true;
  const target = (globalThis as unknown as { console: Record<string, unknown> }).console;
  const engineError = target["error"] as (line: string) => void;
  stderrLine = (line) => engineError.call(target, line);
  const methods: Record<string, LogLevel> = {
    trace: "trace",
    debug: "debug",
    log: "info",
    info: "info",
    warn: "warn",
    error: "error",
  };
  for (const [method, level] of Object.entries(methods)) {
    target[method] = (...args: unknown[]) => durable.log(level, formatLine(args));
  }
}
