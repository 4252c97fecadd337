// A voice-call client with the @vapi-ai/web interface that talks WebRTC to our own server instead of Vapi's.
//
// The page only ever uses this interface, so hosted mode swaps this module for the real SDK with one import.
// See docs/vapi-compat.md for how each method and event maps onto our signalling and data channel.

const ICE_GATHERING_TIMEOUT_MS = 4000;
const END_REQUEST_TIMEOUT_MS = 4000;
const VOLUME_INTERVAL_MS = 60;
// pipecat's SmallWebRTC server treats a peer as alive while it pings at least every 3 s (as pipecat's own
// browser client does), which lets the server notice a vanished learner and end the lesson.
const PING_INTERVAL_MS = 1000;

/** A tiny event emitter with the EventEmitter methods the Vapi SDK exposes. */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push({ listener, once: false });
    return this;
  }

  once(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push({ listener, once: true });
    return this;
  }

  off(event, listener) {
    const list = this._listeners.get(event);
    if (!list) return this;
    const index = list.findIndex((entry) => entry.listener === listener);
    if (index >= 0) list.splice(index, 1);
    return this;
  }

  removeListener(event, listener) {
    return this.off(event, listener);
  }

  removeAllListeners(event) {
    if (event === undefined) this._listeners.clear();
    else this._listeners.delete(event);
    return this;
  }

  listenerCount(event) {
    return (this._listeners.get(event) || []).length;
  }

  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || list.length === 0) return false;
    for (const entry of [...list]) {
      if (entry.once) this.off(event, entry.listener);
      try {
        entry.listener(...args);
      } catch (err) {
        // A failing page handler must not break the call's own bookkeeping.
        console.error(`vapi.js: a "${event}" listener threw`, err);
      }
    }
    return true;
  }
}

/** The lesson id from an assistant object ({metadata: {lessonId}}) or a bare id. */
function lessonIdFrom(assistantOrLessonId) {
  if (typeof assistantOrLessonId === "number" || typeof assistantOrLessonId === "string") {
    return String(assistantOrLessonId);
  }
  const metadata = assistantOrLessonId && assistantOrLessonId.metadata;
  if (metadata && (metadata.lessonId !== undefined || metadata.lesson_id !== undefined)) {
    return String(metadata.lessonId ?? metadata.lesson_id);
  }
  return null;
}

/** Resolve once ICE gathering completes, or after a timeout (late candidates are trickled with PATCH). */
function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, timeoutMs);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") finish();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

class CallError extends Error {
  constructor(message, { code = "call_failed", status = 0 } = {}) {
    super(message);
    this.name = "CallError";
    this.code = code;
    this.status = status;
  }
}

export default class Vapi extends Emitter {
  /**
   * @param {string} publicKey kept for interface parity; our server authenticates with the session cookie
   * @param {string} [apiBaseUrl] where our API lives (defaults to this page's origin)
   */
  constructor(publicKey = "", apiBaseUrl = undefined) {
    super();
    this.publicKey = publicKey;
    const base = apiBaseUrl || (typeof location !== "undefined" ? location.origin : "");
    this.apiBaseUrl = String(base).replace(/\/+$/, "");
    this._muted = false;
    this._reset();
    // Closing the tab is a hang-up, not a lost connection: a beacon still gets out while the page unloads.
    this._onPageHide = () => {
      if (this._active && this._offerSent && navigator.sendBeacon) {
        navigator.sendBeacon(`${this.apiBaseUrl}/api/lessons/${encodeURIComponent(this._lessonId)}/end`);
      }
    };
  }

  _reset() {
    this._active = false;
    this._started = false;
    this._ending = false;
    this._lessonId = null;
    this._pcId = null;
    this._pc = null;
    this._dc = null;
    this._mic = null;
    this._audio = null;
    this._audioContext = null;
    this._analyser = null;
    this._volumeTimer = null;
    this._pingTimer = null;
    this._outbox = [];
    this._lateCandidates = [];
    this._offerSent = false;
  }

  /**
   * Start a lesson's call. Resolves with a small call object once the server has answered the offer;
   * `call-start` follows when audio and the data channel are up.
   */
  async start(assistantOrLessonId, overrides = undefined) {
    void overrides; // our server builds the lesson from the stored companion; overrides have nothing to change
    if (this._active) throw new CallError("A call is already in progress.", { code: "call_in_progress" });
    const lessonId = lessonIdFrom(assistantOrLessonId);
    if (lessonId === null) {
      const error = new CallError("start() needs an assistant with metadata.lessonId, or a lesson id.", {
        code: "missing_lesson_id",
      });
      this.emit("error", error);
      throw error;
    }
    this._reset();
    this._active = true;
    this._lessonId = lessonId;
    window.addEventListener("pagehide", this._onPageHide);
    // Made now, while the click that started the call still counts as a user gesture, so it is not suspended.
    this._audioContext = this._makeAudioContext();
    try {
      const iceServers = await this._iceServers();
      this._mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      if (!this._active) throw new CallError("The call was stopped while starting.", { code: "stopped" });
      const micTrack = this._mic.getAudioTracks()[0];
      micTrack.enabled = !this._muted;

      const pc = new RTCPeerConnection({ iceServers });
      this._pc = pc;
      // Audio first: pipecat maps the first transceiver to the learner's microphone.
      pc.addTransceiver(micTrack, { direction: "sendrecv", streams: [this._mic] });
      // The server only talks on a channel the browser opened, so it must exist before the offer.
      this._wireDataChannel(pc.createDataChannel("messages", { ordered: true }));
      pc.addEventListener("track", (event) => this._onRemoteTrack(event));
      pc.addEventListener("connectionstatechange", () => this._onConnectionState());
      pc.addEventListener("icecandidate", (event) => this._onIceCandidate(event));

      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringDone(pc, ICE_GATHERING_TIMEOUT_MS);
      if (!this._active) throw new CallError("The call was stopped while starting.", { code: "stopped" });
      this._offerSent = true;
      const answer = await this._request("POST", `/api/lessons/${encodeURIComponent(lessonId)}/offer`, {
        sdp: pc.localDescription.sdp,
        type: pc.localDescription.type,
      });
      if (!this._active) throw new CallError("The call was stopped while starting.", { code: "stopped" });
      this._pcId = answer.pc_id ?? null;
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
      this._flushLateCandidates();
      return { id: lessonId, lessonId, pcId: this._pcId };
    } catch (err) {
      const error = this._asCallError(err);
      if (error.code !== "stopped") this.emit("error", error);
      // A lesson that never connected should not stay open on the server.
      if (this._offerSent) await this._endOnServer();
      this._teardown({ emitEnd: this._started });
      throw error;
    }
  }

  /** Hang up: tell the server first (so it records "customer-ended-call"), then close the connection. */
  async stop() {
    if (!this._active || this._ending) return;
    this._ending = true;
    if (this._offerSent) await this._endOnServer();
    this._teardown({ emitEnd: true });
  }

  /** Newer SDK versions name the hang-up `end()`. */
  end() {
    return this.stop();
  }

  setMuted(muted) {
    this._muted = Boolean(muted);
    const track = this._mic && this._mic.getAudioTracks()[0];
    if (track) track.enabled = !this._muted;
  }

  isMuted() {
    return this._muted;
  }

  /** Send a JSON message to the server on the data channel (queued until the channel opens). */
  send(message) {
    const text = JSON.stringify(message);
    if (this._dc && this._dc.readyState === "open") this._dc.send(text);
    else if (this._active) this._outbox.push(text);
  }

  /** Ask the tutor to say something, optionally hanging up after it has been spoken. */
  say(message, endCallAfterSpoken = false) {
    this.send({ type: "say", message, endCallAfterSpoken: Boolean(endCallAfterSpoken) });
  }

  // -- internals -----------------------------------------------------------------------------------------

  async _request(method, path, body, { timeoutMs = 0 } = {}) {
    const controller = timeoutMs ? new AbortController() : null;
    const timer = controller ? setTimeout(() => controller.abort(), timeoutMs) : null;
    try {
      const response = await fetch(this.apiBaseUrl + path, {
        method,
        credentials: "include",
        headers: body === undefined ? { Accept: "application/json" } : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller ? controller.signal : undefined,
      });
      const text = await response.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = null;
      }
      if (!response.ok) {
        const error = (data && data.error) || {};
        throw new CallError(error.message || `The server answered ${response.status}.`, {
          code: error.code || `http_${response.status}`,
          status: response.status,
        });
      }
      return data;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  async _iceServers() {
    try {
      const config = await this._request("GET", "/api/config");
      const servers = config && config.voice && config.voice.ice_servers;
      return Array.isArray(servers) ? servers : [];
    } catch {
      return []; // loopback and LAN calls work without STUN; the offer will tell if they do not
    }
  }

  async _endOnServer() {
    try {
      await this._request("POST", `/api/lessons/${encodeURIComponent(this._lessonId)}/end`, undefined, {
        timeoutMs: END_REQUEST_TIMEOUT_MS,
      });
    } catch {
      // Closing the connection ends the lesson on the server too (as a disconnect), so this is best-effort.
    }
  }

  _asCallError(err) {
    if (err instanceof CallError) return err;
    if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) {
      return new CallError("Microphone access was blocked. Allow the microphone to talk with your tutor.", {
        code: "microphone_blocked",
      });
    }
    if (err && (err.name === "NotFoundError" || err.name === "OverconstrainedError")) {
      return new CallError("No microphone was found on this device.", { code: "microphone_missing" });
    }
    if (err && err.name === "TypeError") {
      return new CallError("The server could not be reached.", { code: "network_error" });
    }
    return new CallError((err && err.message) || "The call could not start.", { code: "call_failed" });
  }

  _makeAudioContext() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    try {
      const context = new Context();
      if (context.state === "suspended") context.resume().catch(() => {});
      return context;
    } catch {
      return null;
    }
  }

  _wireDataChannel(dc) {
    this._dc = dc;
    dc.addEventListener("open", () => {
      for (const text of this._outbox.splice(0)) dc.send(text);
      this._pingTimer = setInterval(() => {
        if (dc.readyState === "open") dc.send(`ping: ${Date.now()}`);
      }, PING_INTERVAL_MS);
      this._markStarted();
    });
    dc.addEventListener("message", (event) => this._onMessage(event.data));
    dc.addEventListener("close", () => {
      // The server closes the channel when the lesson is over; give a final status-update a moment to land.
      if (this._active && !this._ending) setTimeout(() => this._teardown({ emitEnd: true }), 300);
    });
  }

  _onMessage(raw) {
    if (typeof raw !== "string") return;
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return; // e.g. a "pong": not one of the call's messages
    }
    if (!message || typeof message !== "object") return;
    this.emit("message", message);
    if (message.type === "speech-update" && message.role === "assistant") {
      this.emit(message.status === "started" ? "speech-start" : "speech-end");
    } else if (message.type === "status-update") {
      if (message.status === "in-progress") this._markStarted();
      if (message.status === "ended") this._teardown({ emitEnd: true });
    } else if (message.type === "error") {
      const detail = message.error || {};
      this.emit(
        "error",
        new CallError(detail.message || "The tutor ran into a problem.", { code: detail.code || "server_error" }),
      );
    }
  }

  _markStarted() {
    if (this._started || !this._active) return;
    this._started = true;
    this.emit("call-start");
  }

  _onConnectionState() {
    const pc = this._pc;
    if (!pc) return;
    if (pc.connectionState === "connected") this._markStarted();
    if ((pc.connectionState === "failed" || pc.connectionState === "closed") && this._active) {
      const lostAfterStart = this._started;
      if (lostAfterStart) {
        this.emit("message", { type: "status-update", status: "ended", endedReason: "customer-disconnected" });
      }
      this._teardown({ emitEnd: lostAfterStart });
    }
  }

  _onIceCandidate(event) {
    if (!event.candidate || !this._offerSent) return; // before the offer, candidates travel inside its SDP
    const { candidate, sdpMid, sdpMLineIndex } = event.candidate;
    this._lateCandidates.push({ candidate, sdpMid, sdpMLineIndex });
    if (this._pcId !== null) this._flushLateCandidates();
  }

  _flushLateCandidates() {
    if (!this._lateCandidates.length || this._pcId === null || !this._active) return;
    const candidates = this._lateCandidates.splice(0);
    this._request("PATCH", `/api/lessons/${encodeURIComponent(this._lessonId)}/offer`, {
      pc_id: this._pcId,
      candidates,
    }).catch(() => {
      // A late candidate that cannot be delivered only matters if no earlier one worked.
    });
  }

  _onRemoteTrack(event) {
    if (event.track.kind !== "audio" || this._audio) return;
    const stream = (event.streams && event.streams[0]) || new MediaStream([event.track]);
    // Chrome only feeds a remote WebRTC stream into WebAudio when a media element also plays it.
    const audio = new Audio();
    audio.autoplay = true;
    audio.srcObject = stream;
    audio.play().catch(() => {});
    this._audio = audio;
    const context = this._audioContext;
    if (!context) return;
    try {
      const analyser = context.createAnalyser();
      analyser.fftSize = 512;
      context.createMediaStreamSource(stream).connect(analyser);
      this._analyser = analyser;
      const samples = new Float32Array(analyser.fftSize);
      this._volumeTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
        const rms = Math.sqrt(sum / samples.length);
        // Speech RMS sits around 0.05-0.3; scale so normal speech spans most of 0..1 like Vapi's level.
        this.emit("volume-level", Math.min(1, rms * 4));
      }, VOLUME_INTERVAL_MS);
    } catch {
      // No analyser means no speaking animation; the call itself still works.
    }
  }

  _teardown({ emitEnd }) {
    if (!this._active) return;
    this._active = false;
    window.removeEventListener("pagehide", this._onPageHide);
    clearInterval(this._volumeTimer);
    clearInterval(this._pingTimer);
    if (this._dc) {
      try {
        this._dc.close();
      } catch {
        /* already closed */
      }
    }
    if (this._pc) this._pc.close();
    if (this._mic) this._mic.getTracks().forEach((track) => track.stop());
    if (this._audio) {
      this._audio.pause();
      this._audio.srcObject = null;
    }
    if (this._audioContext) this._audioContext.close().catch(() => {});
    const wasStarted = this._started;
    this._reset();
    if (emitEnd && wasStarted) {
      this.emit("volume-level", 0);
      this.emit("call-end");
    } else if (emitEnd) {
      this.emit("call-end");
    }
  }
}

export { Vapi };
