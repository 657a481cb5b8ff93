// Drives the node's web console in headless Chromium (Debian's chromium) with
// puppeteer-core, the way a person uses it, and prints what the page showed as one JSON
// document on stdout for tests/e2e/test_console_web.py to check. Every wait is bounded.
//
// env: CONSOLE_URL (http://host:port/), SHOT_DIR (screenshots go there), MODE ("views":
// every view on a node with --auth off; "auth": the sign-in flow on a node with --auth
// on), TOKEN (MODE auth: a valid token), WORKFLOW_ID (MODE views: the workflow to open),
// CHROMIUM (the browser; default Debian's).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const puppeteer = require("puppeteer-core");

const WAIT = 10000;
const env = process.env;
const url = env.CONSOLE_URL;
const shots = env.SHOT_DIR;

function browserPath() {
  if (env.CHROMIUM) return env.CHROMIUM;
  // The binary itself: /usr/bin/chromium is a shell wrapper around it.
  for (const p of ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]) {
    if (fs.existsSync(p)) return p;
  }
  throw new Error("no chromium: apt-get install chromium");
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function ready(page, view) {
  await page.waitForSelector(`#view[data-ready="${view}"]`, { timeout: WAIT });
}

async function go(page, view) {
  await page.click(`#nav a[data-view="${view}"]`);
  await ready(page, view);
}

const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));

async function views(page, out) {
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: WAIT });
  await ready(page, "overview");
  out.overview = {
    nodeId: await page.$eval("#node-id", (e) => e.textContent),
    version: await page.$eval("#node-version", (e) => e.textContent),
    summary: await page.$eval(".summary", (e) => e.textContent),
  };
  // The chart draws a point per second from /metrics: wait for three.
  await page.waitForFunction(
    () => Number(document.querySelector("#rate-chart")?.dataset.samples || 0) >= 3,
    { timeout: WAIT });
  // Calls made now show on the chart within a few seconds.
  await page.evaluate(() => Promise.all([...Array(30)].map(() => fetch("/collector.CollectorConsole/Display", {
    method: "POST", headers: { "content-type": "application/json" }, body: "{}" }))));
  await page.waitForFunction(
    () => Number.parseFloat(document.querySelector("#rate-chart .rate-now")?.textContent) > 0,
    { timeout: WAIT });
  out.overview.chartPoints = await page.$eval("#rate-chart .rate-line",
    (e) => e.getAttribute("points").trim().split(/\s+/).length);
  out.overview.rateLabel = await page.$eval("#rate-chart .rate-now", (e) => e.textContent);
  out.overview.peakRate = await page.$eval("#rate-chart", (e) => Number(e.dataset.peak));
  out.shots.push(await shot(page, "overview"));

  await go(page, "registries");
  out.registries = {
    namespaces: await texts(page, "h3.ns"),
    services: await page.$$eval("tr.service", (rs) => rs.map((r) => r.dataset.service)),
    empty: await texts(page, "#view .empty"),
  };
  out.shots.push(await shot(page, "registries"));

  await go(page, "collections");
  out.collections = { names: await page.$$eval("tr.collection", (rs) => rs.map((r) => r.dataset.name)) };
  await page.click('tr.collection[data-name="default/animals"] button.browse');
  await page.waitForSelector("#records .record", { timeout: WAIT });
  out.collections.count = await page.$eval("#records .count", (e) => e.textContent);
  out.collections.records = await texts(page, "#records .record pre");
  out.shots.push(await shot(page, "collections-browse"));
  await page.type("#search-text", "giraffe");
  await page.click("#search-form button[type=submit]");
  await page.waitForFunction(
    () => /match/.test(document.querySelector("#records .count")?.textContent || ""), { timeout: WAIT });
  out.collections.searchCount = await page.$eval("#records .count", (e) => e.textContent);
  out.collections.searchRecords = await texts(page, "#records .record pre");
  out.shots.push(await shot(page, "collections-search"));

  // Back it up, verify the backup, restore it under a new name.
  await page.waitForSelector("#backups .empty", { timeout: WAIT });
  out.collections.backupsBefore = await texts(page, "#backups .empty");
  await page.click("#backup-now");
  await page.waitForSelector("#backups tr.backup", { timeout: WAIT });
  await page.click("#backups tr.backup button.verify");
  await page.waitForFunction(
    () => !["", "…"].includes(document.querySelector("#backups tr.backup .result")?.textContent || ""),
    { timeout: WAIT });
  out.collections.verify = await page.$eval("#backups tr.backup .result", (e) => e.textContent);
  await page.click("#backups tr.backup button.restore");
  await page.waitForFunction(
    () => {
      const e = document.querySelector("#backups tr.backup .result");
      return e && (e.textContent.startsWith("restored") || e.classList.contains("error"));
    }, { timeout: WAIT });
  out.collections.restore = await page.$eval("#backups tr.backup .result", (e) => e.textContent);
  out.collections.backupRows = await page.$$eval("#backups tr.backup td", (tds) => tds.map((t) => t.textContent));
  out.shots.push(await shot(page, "collections-backups"));

  // A bad name: the node's own message next to the form.
  await page.type('#create-form input[name="name"]', "bad name!");
  await page.click("#create-form button[type=submit]");
  await page.waitForFunction(
    () => (document.querySelector("#create-error")?.textContent || "") !== "", { timeout: WAIT });
  out.collections.createError = await page.$eval("#create-error", (e) => e.textContent);
  // Create one, see it listed, delete it, see it gone.
  await page.$eval('#create-form input[name="name"]', (e) => { e.value = ""; });
  await page.type('#create-form input[name="name"]', "made_in_browser");
  await page.click("#create-form button[type=submit]");
  await page.waitForSelector('tr.collection[data-name="default/made_in_browser"]', { timeout: WAIT });
  out.collections.afterCreate = await page.$$eval("tr.collection", (rs) => rs.map((r) => r.dataset.name));
  await page.click('tr.collection[data-name="default/made_in_browser"] button.delete');
  await page.waitForFunction(
    () => !document.querySelector('tr.collection[data-name="default/made_in_browser"]') &&
      document.querySelector('#view[data-ready="collections"]'), { timeout: WAIT });
  out.collections.afterDelete = await page.$$eval("tr.collection", (rs) => rs.map((r) => r.dataset.name));

  await go(page, "workflows");
  out.workflows = {
    rows: await page.$$eval("tr.workflow", (rs) => rs.map((r) => ({
      id: r.dataset.id, state: r.querySelector(".badge").textContent }))),
    counts: await texts(page, ".counts .count"),
  };
  await page.click(`tr.workflow[data-id="${env.WORKFLOW_ID}"] a.wf-link`);
  await page.waitForSelector("#dag g.task", { timeout: WAIT });
  await page.waitForSelector("tr.execution", { timeout: WAIT });
  out.workflows.title = await page.$eval("#wf-title", (e) => e.textContent);
  out.workflows.tasks = await page.$$eval("#dag g.task", (gs) => gs.map((g) => {
    const r = g.querySelector("rect").getBoundingClientRect();
    return { id: g.dataset.task, state: g.dataset.state, label: g.querySelector(".task-id").textContent,
      fill: getComputedStyle(g.querySelector("rect")).fill, x: r.x, w: r.width, h: r.height };
  }));
  out.workflows.edges = await page.$$eval("#dag path.edge", (ps) => ps.map((p) => [p.dataset.from, p.dataset.to]));
  out.workflows.recent = await page.$$eval("tr.recent-execution", (rs) => rs.map((r) => r.dataset.task));
  out.workflows.history = await page.$$eval("tr.execution", (rs) => rs.map((r) =>
    [...r.querySelectorAll("td")].map((td) => td.textContent)));
  out.shots.push(await shot(page, "workflow"));

  await go(page, "connections");
  out.connections = {
    peers: await page.$$eval("tr.peer", (rs) => rs.map((r) => ({
      state: r.dataset.state, cells: [...r.querySelectorAll("td")].map((td) => td.textContent) }))),
    meshNodes: await page.$$eval("#mesh .mesh-node", (gs) => gs.map((g) => g.getAttribute("class"))),
  };
  out.shots.push(await shot(page, "connections"));
}

async function auth(page, out) {
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: WAIT });
  await page.waitForSelector("#login:not([hidden])", { visible: true, timeout: WAIT });
  await ready(page, "overview");
  out.before = { viewText: await page.$eval("#view", (e) => e.textContent) };
  out.shots.push(await shot(page, "login"));

  await page.type("#token", "col_0000000000000000_" + "0".repeat(64));
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(
    () => (document.querySelector("#login-error")?.textContent || "") !== "", { timeout: WAIT });
  out.badToken = {
    error: await page.$eval("#login-error", (e) => e.textContent),
    loginShown: await page.$eval("#login", (e) => !e.hidden),
  };

  await page.type("#token", env.TOKEN);
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(
    () => (document.querySelector("#node-id")?.textContent || "") !== "", { timeout: WAIT });
  out.after = {
    nodeId: await page.$eval("#node-id", (e) => e.textContent),
    loginShown: await page.$eval("#login", (e) => !e.hidden),
    stored: await page.evaluate(() => sessionStorage.getItem("collector-token")),
  };
  await go(page, "collections");
  out.after.collections = await page.$$eval("tr.collection", (rs) => rs.map((r) => r.dataset.name));
  out.shots.push(await shot(page, "signed-in"));

  // The token stays for the tab's session: a reload needs no new sign-in.
  await page.reload({ waitUntil: "domcontentloaded", timeout: WAIT });
  await ready(page, "collections");
  out.afterReload = { loginShown: await page.$eval("#login", (e) => !e.hidden) };

  await page.click("#signout");
  await page.waitForSelector("#login:not([hidden])", { visible: true, timeout: WAIT });
  out.afterSignOut = { stored: await page.evaluate(() => sessionStorage.getItem("collector-token")) };

  // A token that may read one namespace: every namespace is refused, its own shows.
  await page.type("#token", env.NS_TOKEN);
  await page.click("#login-form button[type=submit]");
  await ready(page, "collections");
  out.nsToken = { everyNs: await page.$eval("#view", (e) => e.textContent) };
  await page.type("#ns", "default");
  await page.keyboard.press("Enter");
  await page.waitForSelector('tr.collection[data-name="default/secret_things"]', { timeout: WAIT });
  await ready(page, "collections");
  out.nsToken.collections = await page.$$eval("tr.collection", (rs) => rs.map((r) => r.dataset.name));
  out.shots.push(await shot(page, "one-namespace"));
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "console-chromium-"));
  const out = { shots: [], consoleErrors: [], pageErrors: [], failedRequests: [], statuses: [] };
  const browser = await puppeteer.launch({
    executablePath: browserPath(),
    headless: true,
    userDataDir: profile,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
      "--disable-extensions", "--window-size=1280,900"],
    defaultViewport: { width: 1280, height: 900 },
    protocolTimeout: 30000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => out.pageErrors.push(String(e)));
    page.on("requestfailed", (r) => out.failedRequests.push(`${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => out.statuses.push([new URL(r.url()).pathname, r.status()]));
    page.on("dialog", (d) => d.accept());
    if (env.MODE === "auth") await auth(page, out);
    else await views(page, out);
  } catch (e) {
    out.failure = String(e && e.stack ? e.stack : e);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(out.failure ? 1 : 0);
}

main();
