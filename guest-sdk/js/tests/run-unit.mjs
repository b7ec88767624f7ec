// `npm test`: bundles tests/unit.test.ts with the SDK's sources and the
// host's interface mapped to tests/fake-host.ts, then runs it in Node.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rolldown } from "rolldown";

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const workDir = await mkdtemp(join(tmpdir(), "reprise-sdk-unit-"));
try {
  const build = await rolldown({
    input: join(sdkDir, "tests", "unit.test.ts"),
    platform: "node",
    resolve: {
      alias: {
        "reprise-sdk": join(sdkDir, "src", "index.ts"),
        "reprise:workflow/durable@0.1.0": join(sdkDir, "tests", "fake-host.ts"),
      },
      extensionAlias: { ".js": [".ts", ".js"] },
    },
    logLevel: "warn",
  });
  const bundle = join(workDir, "unit.test.mjs");
  await build.write({ file: bundle, format: "esm", codeSplitting: false });
  await build.close();
  await import(pathToFileURL(bundle).href);
} finally {
  await rm(workDir, { recursive: true, force: true });
}
