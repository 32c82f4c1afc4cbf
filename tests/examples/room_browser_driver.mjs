// Drives the room demo in headless Chromium (Debian's) with playwright-core from
// examples/room/node_modules: page A publishes fake camera+mic, page B only watches.
// Prints one JSON line: {samples: [roomState of B...], published: [A's producers as relay
// received them], error?}. Usage:
//   node room_browser_driver.mjs <room URL> <screenshot path> <user data dir>
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../examples/room/package.json"));
const { chromium } = require("playwright-core");

const [url, screenshot, userDataDir] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
];

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args,
});
const result = { samples: [] };
try {
  const publisher = await context.newPage();
  await publisher.goto(`${url}?subscribe=0`);
  await publisher.waitForFunction(() => window.roomJoined !== undefined, null, { timeout: 30000 });
  const watcher = await context.newPage();
  watcher.on("console", (m) => process.stderr.write(`watcher: ${m.text()}\n`));
  await watcher.goto(`${url}?publish=0`);
  // roomState() is async (getStats): poll it from here, waitForFunction takes a promise
  // for a truthy value.
  const deadline = Date.now() + 25000;
  for (;;) {
    const s = await watcher.evaluate(() => window.roomState());
    if (s.videos.length > 0 && s.videos[0].framesDecoded > 0) break;
    if (Date.now() > deadline) throw new Error(`no decoded video: ${JSON.stringify(s)}`);
    await watcher.waitForTimeout(200);
  }
  for (let i = 0; i < 3; i++) {
    result.samples.push(await watcher.evaluate(() => window.roomState()));
    await watcher.waitForTimeout(700);
  }
  // Give Chrome a few seconds to bring up its simulcast layers (its bandwidth estimate
  // allocates them one by one), then read what relay bound.
  const layersBy = Date.now() + 10000;
  for (;;) {
    result.published = await publisher.evaluate(() => window.roomPublished());
    const video = result.published.find((p) => p.kind === "video");
    const bound = video ? video.stats.filter((s) => s.ssrc !== null && s.packetsReceived > 0) : [];
    if (bound.length >= 2 || Date.now() > layersBy) break;
    await publisher.waitForTimeout(500);
  }
  await watcher.screenshot({ path: screenshot });
} catch (e) {
  result.error = String(e);
} finally {
  await context.close();
}
console.log(JSON.stringify(result));
