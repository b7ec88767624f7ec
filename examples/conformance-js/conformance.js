// The determinism conformance probes in plain JavaScript, no SDK (built by
// scripts/build-guests with guest-sdk/js's pinned componentize-js): every
// way plain JavaScript reaches time, randomness, timers, output and HTTP.
// Answers the same keys as examples/conformance (Rust) and
// examples/conformance-py; the JavaScript engine has no environment, files
// or sockets, so those probes answer "unavailable".
import { nowMs } from 'reprise:workflow/durable@0.1.0';

function attempt(action) {
  try {
    return { ok: String(action()) };
  } catch (error) {
    return { error: String(error) };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function run(input) {
  const { sleep_ms } = JSON.parse(input);
  const wall_ms = Date.now();
  const durable_ms = Number(nowMs());
  const random = String(Math.random());
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const secure_random = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  const printed = `random=${random}`;
  console.log(printed);

  const slept_from = performance.now();
  await sleep(sleep_ms);
  const slept_ms = Math.floor(performance.now() - slept_from);

  // A timer looked at before and after it is due.
  let fired = false;
  setTimeout(() => { fired = true; }, 50);
  const before = fired;
  await sleep(100);
  const poll = [before, fired];

  let http;
  try {
    const response = await fetch('http://127.0.0.1:9/');
    http = { ok: `status ${response.status}` };
  } catch (error) {
    http = { error: String(error) };
  }
  return JSON.stringify({
    language: 'javascript',
    wall_ms,
    durable_ms,
    random,
    secure_random,
    printed,
    slept_ms,
    poll,
    env: 'unavailable',
    files: 'unavailable',
    sockets: 'unavailable',
    http,
  });
}
