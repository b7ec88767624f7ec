#!/usr/bin/env node
// Part of `npm run build`: copies the contract (the repository's
// wit/reprise.wit) into the package, so an installed `reprise-build` builds
// against the WIT of the SDK it ships with.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const contract = join(sdkDir, "..", "..", "wit", "reprise.wit");
if (!existsSync(contract)) {
  console.error(`copy-wit: ${contract} not found: the build runs from a Reprise checkout`);
  process.exit(1);
}
mkdirSync(join(sdkDir, "wit"), { recursive: true });
copyFileSync(contract, join(sdkDir, "wit", "reprise.wit"));
