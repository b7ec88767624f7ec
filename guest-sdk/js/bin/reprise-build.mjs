#!/usr/bin/env node
// reprise-build: turns a workflow written in TypeScript (or JavaScript) on
// the Reprise SDK into a WebAssembly component of the `workflow` world.
//
//   reprise-build app.ts -o app.wasm [--wit DIR] [--world NAME] [--bundle-out FILE]
//
// 1. rolldown bundles the file, the SDK (always this package's own source,
//    whatever `reprise-sdk` the project has installed) and whatever else it
//    imports into one ES module; the host's interfaces (`reprise:…`,
//    `wasi:…`) stay imports. Types are stripped, not checked: run `tsc
//    --noEmit` for that.
// 2. componentize-js (SpiderMonkey, pre-initialized with wizer) turns that
//    module into a component against the contract's WIT.

import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const usage = "usage: reprise-build <workflow.ts> -o <component.wasm> [--wit DIR] [--world NAME] [--bundle-out FILE]";

function fail(message) {
  console.error(`reprise-build: ${message}`);
  process.exit(2);
}

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        out: { type: "string", short: "o" },
        wit: { type: "string" },
        world: { type: "string", default: "workflow" },
        "bundle-out": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    fail(`${error.message}\n${usage}`);
  }
}

/** The contract: --wit, else the copy this package carries (`npm run build`
 * puts it there), else the repository's when run from a checkout. */
function witDirectory(explicit) {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) fail(`--wit ${explicit}: no such file or directory`);
    return resolve(explicit);
  }
  for (const candidate of [join(sdkDir, "wit"), join(sdkDir, "..", "..", "wit")]) {
    if (existsSync(join(candidate, "reprise.wit"))) return candidate;
  }
  fail(`no WIT found in ${join(sdkDir, "wit")}: run \`npm run build\` in ${sdkDir}, or pass --wit DIR`);
}

async function bundle(entry, bundlePath) {
  const { rolldown } = await import("rolldown");
  const build = await rolldown({
    input: entry,
    platform: "neutral",
    // The SDK's own sources, so the build never runs a stale copy.
    resolve: {
      alias: { "reprise-sdk": join(sdkDir, "src", "index.ts") },
      extensionAlias: { ".js": [".ts", ".js"] },
    },
    external: [/^reprise:/, /^wasi:/],
    logLevel: "warn",
    onLog(level, log) {
      console.error(`reprise-build: ${level}: ${log.message}`);
    },
  });
  try {
    await build.write({ file: bundlePath, format: "esm", codeSplitting: false });
  } finally {
    await build.close();
  }
}

async function main() {
  const { values, positionals } = parse();
  if (values.help) {
    console.log(usage);
    return;
  }
  if (positionals.length !== 1) fail(`give exactly one workflow file; got ${positionals.length}\n${usage}`);
  if (values.out === undefined) fail(`-o <component.wasm> is required\n${usage}`);
  const entry = resolve(positionals[0]);
  if (!existsSync(entry)) fail(`${positionals[0]}: no such file`);
  const witPath = witDirectory(values.wit);

  const workDir = await mkdtemp(join(tmpdir(), "reprise-build-"));
  try {
    const bundlePath = values["bundle-out"] === undefined ? join(workDir, "workflow.js") : resolve(values["bundle-out"]);
    try {
      await bundle(entry, bundlePath);
    } catch (error) {
      fail(`bundling ${positionals[0]} failed: ${error.message}`);
    }
    const source = await readFile(bundlePath, "utf8");
    if (!/\bexport\s*\{[^}]*\brun\b[^}]*\}|\bexport\s+(const|let|var|function|async\s+function)\s+run\b/.test(source)) {
      fail(`${positionals[0]} exports no \`run\`: write \`export const run = workflow(async (ctx, input) => ...)\``);
    }
    const { componentize } = await import("@bytecodealliance/componentize-js");
    let component;
    try {
      ({ component } = await componentize({ sourcePath: bundlePath, witPath, worldName: values.world }));
    } catch (error) {
      fail(`componentize-js failed on ${positionals[0]} (world \`${values.world}\`, WIT ${witPath}): ${error.message}`);
    }
    await writeFile(resolve(values.out), component);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
