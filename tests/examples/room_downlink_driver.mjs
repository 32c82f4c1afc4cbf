// One publisher and two watchers in the room demo, for the downlink test: three headless
// Chromium pages (Debian's, with playwright-core from examples/room/node_modules); page 0
// publishes fake camera (three simulcast layers by RID) + microphone, pages 1 and 2 only
// subscribe (?publish=0). Once both watchers' receive transports are connected it prints one
// line {"ready": t0, "ports": [udp port of page 1, of page 2]} (the browser's side of each
// receive transport as relay selected it: the test limits page 1's downlink by that port),
// then samples every page once a second for <seconds>: Chrome's getStats (the publisher's
// outbound layers, every subscription's inbound-rtp) and relay's view (the consumers'
// layers and resends, the receive transport's estimate).
// Writes {peers, ports, samples: [{i, t, pages: [{peer, sender, receiver, relay:
// {consumers, recvTransport}}]}], error?} to <output json>. Usage:
//   node room_downlink_driver.mjs <room URL> <seconds> <output json> <user data dir>
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../examples/room/package.json"));
const { chromium } = require("playwright-core");

const [url, secondsArg, output, userDataDir] = process.argv.slice(2);
const seconds = Number(secondsArg);
const CONNECT_TIMEOUT_MS = 30000;
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  // Three pages in one browser: none of them may be treated as a background tab.
  "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args,
  viewport: { width: 800, height: 420 },
});
const result = { peers: [], ports: null, samples: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  const urls = [url, `${url}?publish=0`, `${url}?publish=0`];
  const pages = [];
  for (let n = 0; n < urls.length; n++) {
    const page = await context.newPage();
    page.on("console", (m) => process.stderr.write(`page${n}: ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`page${n} error: ${e}\n`));
    pages.push(page);
  }
  const join = async (p, u) => {
    await p.goto(u);
    await p.waitForFunction(() => window.roomJoined !== undefined, null, { timeout: 30000 });
    return p.evaluate(() => window.roomJoined);
  };
  // The publisher first, so that the watchers consume its producers as they join.
  result.peers.push(await join(pages[0], urls[0]));
  result.peers.push(...await Promise.all(pages.slice(1).map((p, n) => join(p, urls[n + 1]))));
  const watchers = pages.slice(1);
  const deadline = Date.now() + CONNECT_TIMEOUT_MS;
  let tuples = [];
  for (;;) {
    tuples = await Promise.all(watchers.map((p) => p.evaluate(
      async () => (await window.roomRecvTransport())?.iceSelectedTuple ?? null)));
    if (tuples.every((t) => t)) break;
    if (Date.now() > deadline) throw new Error(`receive transports not connected: ${JSON.stringify(tuples)}`);
    await sleep(200);
  }
  result.ports = tuples.map((t) => ({ port: t.remotePort, protocol: t.protocol }));
  const t0 = Date.now();
  console.log(JSON.stringify({ ready: t0, ports: result.ports }));
  for (let i = 0; i <= seconds; i++) {
    const wait = t0 + i * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    const t = (Date.now() - t0) / 1000;
    const states = await Promise.all(pages.map((p) => p.evaluate(async () => ({
      problems: window.roomProblems(),
      sender: await window.roomSenderStats(),
      receiver: await window.roomReceiverStats(),
      relay: { consumers: await window.roomRelayConsumers(),
               recvTransport: await window.roomRecvTransport() },
    }))));
    result.samples.push({ i, t, pages: states.map((s, n) => ({ peer: result.peers[n], ...s })) });
  }
} catch (e) {
  result.error = String(e);
} finally {
  writeFileSync(output, JSON.stringify(result));
  await context.close();
}
console.log(JSON.stringify({ error: result.error ?? null, samples: result.samples.length }));
