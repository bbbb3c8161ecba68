// A WebSocket that comes back: reconnects with capped, jittered exponential backoff until a close code says
// retrying is pointless (not authenticated, not a member, no such room). Each (re)connect asks `urlFor()`
// for its URL, so the chat socket can resume from the newest seq it has seen.

const FINAL_CLOSE_CODES = new Set([4401, 4403, 4404]);
const PING_EVERY_MS = 30000; // well under the server's idle limit

export class ReconnectingSocket {
  constructor({ urlFor, onFrame, onState, baseDelayMs = 300, maxDelayMs = 8000 }) {
    this.urlFor = urlFor;
    this.onFrame = onFrame;
    this.onState = onState;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.attempts = 0;
    this.ws = null;
    this.stopped = false;
    this.pingTimer = null;
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Called by the owner once the server said the socket is usable (e.g. `synced`): the next drop starts
  // its backoff from the shortest delay again.
  resetBackoff() {
    this.attempts = 0;
  }

  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    const protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${protocol}//${window.location.host}${this.urlFor()}`);
    this.ws = ws;
    this.onState(this.attempts === 0 ? "connecting" : "reconnecting");
    ws.addEventListener("open", () => {
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      clearInterval(this.pingTimer);
      if (this.stopped) return;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        this.onState("closed", event.code);
        return;
      }
      this.attempts += 1;
      const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (this.attempts - 1));
      const jittered = delay * (0.75 + Math.random() * 0.5);
      this.onState("reconnecting", event.code);
      this.retryTimer = setTimeout(() => this.connect(), jittered);
    });
  }
}

// crypto.randomUUID needs a secure context; plain-http deployments still get a v4 UUID.
export function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
