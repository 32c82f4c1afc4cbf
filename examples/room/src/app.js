// The room page: mediasoup-client against relay. Query options: ?publish=0 (only watch),
// ?subscribe=0 (only publish), ?simulcast=0 (one video encoding instead of three by RID).
// window.roomState(), roomSenderStats(), roomReceiverStats(), roomPublished(),
// roomRelayConsumers() and roomRecvTransport() report what a test needs.
import { Device } from "mediasoup-client";

const params = new URLSearchParams(location.search);
const wantPublish = params.get("publish") !== "0";
const wantSubscribe = params.get("subscribe") !== "0";
const wantSimulcast = params.get("simulcast") !== "0";
// Three spatial layers, as mediasoup's demo sends them; mediasoup-client names them r0..r2.
const SIMULCAST_ENCODINGS = [
  { scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1200000 },
];
const localProducers = [];
const statusEl = document.getElementById("status");
const videosEl = document.getElementById("videos");

const remote = new Map(); // producerId -> {consumer, figure, peerId}
let nextId = 1;
const pending = new Map();
let recvTransport = null;
let sendTransport = null;
let device = null;
// newProducer notifications can arrive before the receive transport exists (the server
// tells every connected peer): they wait here until the join's own list is consumed. A
// producer is consumed once, however it was announced (the join's list and a notification
// can both name one produced while we joined).
let subscribing = false;
const consumeQueue = [];
const subscribed = new Set(); // producer ids consumed or being consumed
const closedProducers = new Set();

const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);

function request(method, data = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, data }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

function setStatus(text) {
  statusEl.textContent = text;
}

// What went wrong, kept: the status line shows the latest message only, and a lost
// subscription's "consume failed" was overwritten by the next status within a second.
const problems = [];
function reportProblem(text) {
  problems.push({ at: performance.now() / 1000, text });
  console.error(text);
  setStatus(text);
}
window.roomProblems = () => problems.slice(); // for tests

ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.id !== undefined) {
    const p = pending.get(message.id);
    pending.delete(message.id);
    if (p) message.ok ? p.resolve(message.data) : p.reject(new Error(message.error));
  } else if (message.notification === "newProducer" && wantSubscribe) {
    if (subscribing) subscribe(message.data);
    else consumeQueue.push(message.data);
  } else if (message.notification === "producerClosed") {
    closedProducers.add(message.data.producerId);
    const entry = remote.get(message.data.producerId);
    if (entry) {
      entry.consumer.close();
      entry.figure.remove();
      remote.delete(message.data.producerId);
    }
  }
};

async function createTransport(direction) {
  const info = await request("createWebRtcTransport", { direction });
  const options = { id: info.id, iceParameters: info.iceParameters,
                    iceCandidates: info.iceCandidates, dtlsParameters: info.dtlsParameters };
  const transport = direction === "send"
    ? device.createSendTransport(options) : device.createRecvTransport(options);
  transport.on("connect", ({ dtlsParameters }, callback, errback) => {
    request("connectTransport", { transportId: transport.id, dtlsParameters })
      .then(callback, errback);
  });
  if (direction === "send") {
    transport.on("produce", ({ kind, rtpParameters }, callback, errback) => {
      request("produce", { transportId: transport.id, kind, rtpParameters })
        .then(({ id }) => callback({ id }), errback);
    });
  }
  transport.on("connectionstatechange", (state) =>
    (state === "failed" ? reportProblem : setStatus)(`${direction}: ${state}`));
  return transport;
}

function subscribe(producer) {
  if (subscribed.has(producer.producerId) || closedProducers.has(producer.producerId)) {
    return Promise.resolve();
  }
  subscribed.add(producer.producerId);
  return consume(producer).catch((e) => reportProblem(`consume failed: ${e}`));
}

async function consume({ producerId, peerId, kind }) {
  const info = await request("consume", {
    transportId: recvTransport.id, producerId, rtpCapabilities: device.rtpCapabilities });
  const consumer = await recvTransport.consume({
    id: info.id, producerId, kind: info.kind, rtpParameters: info.rtpParameters });
  if (closedProducers.has(producerId)) { // closed while we asked for it
    consumer.close();
    return;
  }
  let figure = document.getElementById(`peer-${peerId}`);
  if (!figure) {
    figure = document.createElement("figure");
    figure.id = `peer-${peerId}`;
    figure.innerHTML = `<video autoplay playsinline></video><figcaption>${peerId}</figcaption>`;
    videosEl.appendChild(figure);
    figure.querySelector("video").srcObject = new MediaStream();
  }
  const video = figure.querySelector("video");
  video.srcObject.addTrack(consumer.track);
  video.muted = true; // autoplay without a user gesture; the audio still flows
  video.play().catch(() => {});
  remote.set(producerId, { consumer, figure, peerId });
  await request("resumeConsumer", { consumerId: info.id });
}

async function main() {
  await new Promise((resolve) => { ws.onopen = resolve; });
  const joined = await request("join");
  device = new Device();
  await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
  if (wantSubscribe) {
    recvTransport = await createTransport("recv");
    for (const producer of joined.producers) await subscribe(producer);
    subscribing = true;
    for (const producer of consumeQueue.splice(0)) subscribe(producer);
  }
  if (wantPublish) {
    // 720p: Chrome sends three simulcast layers only from about 960x540 up.
    const video = wantSimulcast ? { width: 1280, height: 720 } : { width: 640, height: 480 };
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    const local = document.getElementById("local");
    local.hidden = false;
    document.getElementById("local-video").srcObject = stream;
    sendTransport = await createTransport("send");
    for (const track of stream.getTracks()) {
      const simulcast = track.kind === "video" && wantSimulcast;
      // A start bitrate as mediasoup's demo sets it: without it Chrome begins near 300 kbps
      // and sends only the lowest layer until its estimate grows.
      const producer = await sendTransport.produce(simulcast
        ? { track, encodings: SIMULCAST_ENCODINGS, codecOptions: { videoGoogleStartBitrate: 1000 } }
        : { track });
      localProducers.push(producer);
    }
  }
  setStatus(`joined as ${joined.peerId}`);
  window.roomJoined = joined.peerId; // for tests: set up done (the status text moves on)
}

// For tests: every remote video's decode progress.
window.roomState = async () => {
  const videos = [];
  for (const [producerId, { consumer, figure }] of remote) {
    if (consumer.kind !== "video") continue;
    let framesDecoded = 0;
    for (const report of (await consumer.getStats()).values()) {
      if (report.type === "inbound-rtp") framesDecoded = report.framesDecoded || 0;
    }
    const video = figure.querySelector("video");
    videos.push({ producerId, framesDecoded, width: video.videoWidth,
                  currentTime: video.currentTime, paused: video.paused });
  }
  return { status: statusEl.textContent, videos };
};

// For tests: what relay received from this page's producers (per encoding: rid, ssrc,
// packets), from the server's producer stats.
window.roomPublished = async () => {
  const producers = [];
  for (const producer of localProducers) {
    producers.push({ kind: producer.kind,
                     rids: producer.rtpParameters.encodings.map((e) => e.rid ?? null),
                     stats: await request("producerStats", { producerId: producer.id }) });
  }
  return producers;
};

// For tests: every consumer of this page as relay sees it (packets sent, the simulcast layer
// it forwards, whether it waits for a key frame).
window.roomRelayConsumers = async () => {
  const consumers = [];
  for (const [producerId, { consumer, peerId }] of remote) {
    consumers.push({ producerId, peerId, kind: consumer.kind,
                     ...(await request("consumerStats", { consumerId: consumer.id })) });
  }
  return consumers;
};

// For tests: this page's receive transport as relay sees it (the selected ICE tuple, whose
// remotePort is this page's UDP port; relay's send-side estimate toward it).
window.roomRecvTransport = async () =>
  recvTransport ? request("transportStats", { transportId: recvTransport.id }) : null;

// The transport's selected ICE candidate pair: Chrome puts its bandwidth estimate
// (availableOutgoingBitrate) there.
function selectedPair(report) {
  let pair = null;
  for (const r of report.values()) {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
  }
  if (!pair) {
    for (const r of report.values()) {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
    }
  }
  return pair;
}

// For tests: what this page sends, from its send transport's getStats(): Chrome's
// bandwidth estimate and every outbound-rtp stream (one per simulcast encoding, by rid).
window.roomSenderStats = async () => {
  if (!sendTransport) return null;
  const report = await sendTransport.getStats();
  const pair = selectedPair(report);
  const outbound = [];
  for (const r of report.values()) {
    if (r.type !== "outbound-rtp") continue;
    outbound.push({ kind: r.kind, rid: r.rid ?? null, ssrc: r.ssrc, active: r.active,
                    frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
                    framesEncoded: r.framesEncoded ?? 0, framesPerSecond: r.framesPerSecond ?? 0,
                    bytesSent: r.bytesSent ?? 0, packetsSent: r.packetsSent ?? 0,
                    targetBitrate: r.targetBitrate ?? null,
                    qualityLimitationReason: r.qualityLimitationReason ?? null });
  }
  outbound.sort((a, b) => (a.kind + (a.rid ?? "")).localeCompare(b.kind + (b.rid ?? "")));
  return { availableOutgoingBitrate: pair?.availableOutgoingBitrate ?? null,
           currentRoundTripTime: pair?.currentRoundTripTime ?? null, outbound };
};

// For tests: every subscription (consumer) of this page, from its receive transport's
// getStats(): the inbound-rtp stream whose track is the consumer's.
window.roomReceiverStats = async () => {
  if (!recvTransport) return [];
  const report = await recvTransport.getStats();
  const byTrack = new Map();
  for (const r of report.values()) {
    if (r.type === "inbound-rtp") byTrack.set(r.trackIdentifier, r);
  }
  const subscriptions = [];
  for (const [producerId, { consumer, peerId }] of remote) {
    const r = byTrack.get(consumer.track.id) ?? {};
    subscriptions.push({ producerId, peerId, kind: consumer.kind, paused: consumer.paused,
                         framesDecoded: r.framesDecoded ?? 0,
                         keyFramesDecoded: r.keyFramesDecoded ?? 0,
                         frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
                         freezeCount: r.freezeCount ?? 0, pliCount: r.pliCount ?? 0,
                         packetsReceived: r.packetsReceived ?? 0,
                         packetsLost: r.packetsLost ?? 0, bytesReceived: r.bytesReceived ?? 0,
                         framesReceived: r.framesReceived ?? 0, framesDropped: r.framesDropped ?? 0,
                         nackCount: r.nackCount ?? 0,
                         retransmittedPacketsReceived: r.retransmittedPacketsReceived ?? null,
                         retransmittedBytesReceived: r.retransmittedBytesReceived ?? null });
  }
  return subscriptions;
};

main().catch((e) => reportProblem(`error: ${e}`));
