// Drives the web view (runtime/src/api/web/index.html) in /usr/bin/chromium
// for runtime/tests/integration/web_view.rs, which starts the server and
// asserts on what this prints: one JSON object of DOM facts on stdout.
//
//   node drive.mjs BASE_URL KEY SCENARIO ARGS…
//
// Scenarios:
//   execution ID [STATUS]        the execution page (once STATUS shows, if given)
//   signal ID NAME PAYLOAD       send a signal from the page; wait until it finishes
//   cancel ID | terminate ID     press the button (terminate: and confirm)
//   download ID DIR              save the history download into DIR
//   list LIMIT PREFIX STATUS     filter through the form ("-": no status), page through
//   screens ID DIR               screenshots at desktop and phone size, and page widths
import { chromium } from "playwright-core";

/** The longest any wait here takes, in ms. */
const WAIT_MS_MAX = 30000;

const [base, key, scenario, ...args] = process.argv.slice(2);
if (!base || !key || !scenario) {
  console.error("usage: node drive.mjs BASE_URL KEY SCENARIO ARGS…");
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", error => pageErrors.push(String(error)));
  const report = await scenarios()[scenario]?.(page, ...args);
  if (report === undefined) throw new Error(`unknown scenario ${scenario}`);
  report.pageErrors = pageErrors;
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}

function scenarios() {
  return { execution, signal, cancel, terminate, download, list, screens };
}

/** Opens execution ID and waits for its first render. */
async function openExecution(page, id) {
  await page.goto(`${base}#key=${encodeURIComponent(key)}&id=${encodeURIComponent(id)}`);
  await page.waitForFunction(() => Number(document.body.dataset.executionRenders) > 0, null, { timeout: WAIT_MS_MAX });
}

async function waitForStatus(page, wanted) {
  await page.waitForFunction(
    wanted => document.querySelector("#status")?.textContent === wanted,
    wanted,
    { timeout: WAIT_MS_MAX },
  );
}

async function waitForStatusOtherThan(page, unwanted) {
  await page.waitForFunction(
    unwanted => {
      const status = document.querySelector("#status")?.textContent;
      return status && status !== unwanted;
    },
    unwanted,
    { timeout: WAIT_MS_MAX },
  );
}

/** What the execution page shows. */
function executionFacts(page) {
  return page.evaluate(() => {
    const text = selector => document.querySelector(selector)?.textContent ?? null;
    const rows = [...document.querySelectorAll("#chart g.row")].map(row => ({
      seq: row.dataset.seq,
      classes: row.getAttribute("class"),
      label: row.querySelector("text.label")?.textContent,
      title: row.querySelector("title")?.textContent,
      compensates: row.dataset.compensates ?? null,
      undoes: row.dataset.undoes ?? null,
      attempts: [...row.querySelectorAll("rect[data-attempt]")].map(bar => ({
        attempt: bar.dataset.attempt,
        classes: bar.getAttribute("class"),
        x: Number(bar.getAttribute("x")),
        width: Number(bar.getAttribute("width")),
      })),
      backoffs: row.querySelectorAll("line.backoff").length,
      signalMarkers: row.querySelectorAll("path.signal").length,
    }));
    return {
      status: text("#status"),
      input: text("#input"),
      result: text("#result"),
      table: text("#timeline"),
      waiting: text("#waiting"),
      lastError: text("#last-error"),
      message: text("#message"),
      actionMessage: text("#action-message"),
      renders: Number(document.body.dataset.executionRenders),
      rows,
    };
  });
}

async function execution(page, id, status) {
  await openExecution(page, id);
  if (status) await waitForStatus(page, status);
  return executionFacts(page);
}

async function signal(page, id, name, payload) {
  await openExecution(page, id);
  await waitForStatus(page, "running");
  await page.waitForFunction(
    name => document.querySelector("#waiting")?.textContent.includes(`signal \`${name}\``),
    name,
    { timeout: WAIT_MS_MAX },
  );
  const before = await executionFacts(page);
  // A refused signal shows the server's reason.
  await page.fill("#signal-name", "x".repeat(300));
  await page.fill("#signal-payload", "1");
  await page.click("#send-signal");
  await page.waitForFunction(() => document.querySelector("#action-message")?.textContent.includes("refused"), null, { timeout: WAIT_MS_MAX });
  const refusal = await page.textContent("#action-message");
  await page.fill("#signal-name", name);
  await page.fill("#signal-payload", payload);
  await page.click("#send-signal");
  // No reload: the page refreshes itself while the execution runs.
  await waitForStatusOtherThan(page, "running");
  const after = await executionFacts(page);
  return { before, refusal, after };
}

async function cancel(page, id) {
  await openExecution(page, id);
  await waitForStatus(page, "running");
  await page.click("#cancel");
  await waitForStatusOtherThan(page, "running");
  return executionFacts(page);
}

/** The status the API gives for ID, fetched by the page with its key. */
function apiStatus(page, id) {
  return page.evaluate(async ({ id, key }) => {
    const response = await fetch(`/v1/executions/${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${key}` } });
    const body = await response.text();
    return /"status":"([a-z]+)"/.exec(body)?.[1] ?? body;
  }, { id, key });
}

async function terminate(page, id) {
  await openExecution(page, id);
  await waitForStatus(page, "running");
  await page.click("#terminate");
  const confirmationShown = await page.isVisible("#confirm-terminate");
  // Give a wrongly immediate termination time to land before looking.
  await page.waitForTimeout(500);
  const statusBeforeConfirming = await apiStatus(page, id);
  await page.click("#confirm-terminate-yes");
  await waitForStatusOtherThan(page, "running");
  return { confirmationShown, statusBeforeConfirming, ...(await executionFacts(page)) };
}

async function download(page, id, dir) {
  await openExecution(page, id);
  const [file] = await Promise.all([page.waitForEvent("download", { timeout: WAIT_MS_MAX }), page.click("#download")]);
  const path = `${dir}/${file.suggestedFilename()}`;
  await file.saveAs(path);
  return { path, actionMessage: await page.textContent("#action-message") };
}

/** The list page's rendered state. */
function listFacts(page) {
  return page.evaluate(() => ({
    ids: [...document.querySelectorAll("#executions tr.execution td:first-child")].map(cell => cell.textContent),
    statuses: [...document.querySelectorAll("#executions tr.execution td:nth-child(3)")].map(cell => cell.textContent),
    counts: Object.fromEntries([...document.querySelectorAll("#counts button[data-status]")]
      .map(button => [button.dataset.status || "all", Number(button.querySelector("b").textContent)])),
    olderEnabled: !document.querySelector("#older").disabled,
    newerEnabled: !document.querySelector("#newer").disabled,
    autoRefresh: document.querySelector("#auto-refresh")?.checked ?? null,
    renders: Number(document.body.dataset.listRenders),
    schedules: [...document.querySelectorAll("#schedules tr.schedule")]
      .map(row => [...row.cells].map(cell => cell.textContent)),
  }));
}

async function nextListRender(page, after) {
  await page.waitForFunction(after => Number(document.body.dataset.listRenders) > after, after, { timeout: WAIT_MS_MAX });
}

async function list(page, limit, prefix, status) {
  await page.goto(`${base}#key=${encodeURIComponent(key)}&limit=${limit}`);
  await nextListRender(page, 0);
  const unfiltered = await listFacts(page);
  // Automatic refreshes would race the clicks below.
  await page.uncheck("#auto-refresh");
  await page.fill("#prefix", prefix);
  if (status !== "-") await page.selectOption("#status", status);
  let renders = Number(await page.evaluate(() => document.body.dataset.listRenders));
  await page.click("#filters button[type=submit]");
  await nextListRender(page, renders);
  const pages = [await listFacts(page)];
  while (pages.at(-1).olderEnabled && pages.length < 20) {
    renders = pages.at(-1).renders;
    await page.click("#older");
    await nextListRender(page, renders);
    pages.push(await listFacts(page));
  }
  let back = null;
  if (pages.length > 1) {
    renders = pages.at(-1).renders;
    await page.click("#newer");
    await nextListRender(page, renders);
    back = await listFacts(page);
  }
  return { unfiltered, pages, back };
}

async function screens(page, id, dir) {
  const shots = {};
  for (const [size, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    await page.setViewportSize(viewport);
    await page.goto(`${base}#key=${encodeURIComponent(key)}`);
    await nextListRender(page, 0);
    const listWidths = await widths(page);
    await page.screenshot({ path: `${dir}/list-${size}.png`, fullPage: true });
    await page.goto(`${base}#key=${encodeURIComponent(key)}&id=${encodeURIComponent(id)}`);
    await page.reload();
    await page.waitForFunction(() => Number(document.body.dataset.executionRenders) > 0, null, { timeout: WAIT_MS_MAX });
    const executionWidths = await widths(page);
    await page.screenshot({ path: `${dir}/execution-${size}.png`, fullPage: true });
    shots[size] = { list: listWidths, execution: executionWidths };
  }
  return { shots, files: ["list-desktop.png", "execution-desktop.png", "list-phone.png", "execution-phone.png"] };
}

function widths(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    chartBoxClientWidth: document.querySelector("#chart-box")?.clientWidth ?? null,
  }));
}
