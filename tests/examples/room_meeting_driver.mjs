// A three-person meeting in the room demo: three headless Chromium pages (Debian's, with
// playwright-core from examples/room/node_modules), each publishing fake camera (three
// simulcast layers by RID) + microphone and subscribing to the other two; the first joins
// alone, the other two 3 s later at the same time. Once all three
// have joined (t = 0) it samples every page once a second for <seconds>: Chrome's getStats
// for the publisher side (window.roomSenderStats) and every subscription
// (window.roomReceiverStats), and relay's view of the same (window.roomPublished: what relay
// received per layer; window.roomRelayConsumers: what it sent each subscription).
// Writes {peers, joinedAfter, samples: [{i, t, pages: [{peer, status, sender, receiver,
// relay: {published, consumers}}]}], error?} to <output json>; a screenshot of the first
// page at the end. Usage:
//   node room_meeting_driver.mjs <room URL> <seconds> <output json> <screenshot> <user data dir>
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../examples/room/package.json"));
const { chromium } = require("playwright-core");

const [url, secondsArg, output, screenshot, userDataDir] = process.argv.slice(2);
const seconds = Number(secondsArg);
const PAGES = 3;
const FIRST_ALONE_MS = 3000;
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  // Three pages in one browser: none of them may be treated as a background tab.
  "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

const launchedAt = Date.now();
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args,
  viewport: { width: 1100, height: 420 },
});
const result = { peers: [], joinedAfter: null, samples: [] };
try {
  const pages = [];
  for (let n = 0; n < PAGES; n++) {
    const page = await context.newPage();
    page.on("console", (m) => process.stderr.write(`page${n}: ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`page${n} error: ${e}\n`));
    pages.push(page);
  }
  // One is in the room and publishing, then two arrive at once: subscriptions to a stream
  // already flowing, and (as people join together) ones created before the producer they
  // receive sends its first packet.
  const join = async (p) => {
    await p.goto(url);
    await p.waitForFunction(() => window.roomJoined !== undefined, null, { timeout: 30000 });
    return p.evaluate(() => window.roomJoined);
  };
  result.peers.push(await join(pages[0]));
  await new Promise((r) => setTimeout(r, FIRST_ALONE_MS));
  result.peers.push(...await Promise.all(pages.slice(1).map(join)));
  const t0 = Date.now();
  result.joinedAfter = (t0 - launchedAt) / 1000;
  for (let i = 0; i <= seconds; i++) {
    const wait = t0 + i * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t = (Date.now() - t0) / 1000;
    const states = await Promise.all(pages.map((p) => p.evaluate(async () => ({
      status: document.getElementById("status").textContent,
      problems: window.roomProblems(),
      sender: await window.roomSenderStats(),
      receiver: await window.roomReceiverStats(),
      relay: { published: await window.roomPublished(), consumers: await window.roomRelayConsumers() },
    }))));
    result.samples.push({ i, t, pages: states.map((s, n) => ({ peer: result.peers[n], ...s })) });
  }
  await pages[0].screenshot({ path: screenshot });
} catch (e) {
  result.error = String(e);
} finally {
  writeFileSync(output, JSON.stringify(result));
  await context.close();
}
console.log(JSON.stringify({ error: result.error ?? null, samples: result.samples.length }));
