// The container page's terminal: xterm.js on the gateway's shell WebSocket. The protocol is
// in the gateway's terminal/bridge.py: binary messages carry the terminal's bytes both ways;
// text messages are JSON: resize and close from here, ready, then exit or error, from there.
// Keystrokes leave as they are typed: on the slow mesh link the gateway gathers them into
// batches for the node, so the browser adds no delay of its own.
"use strict";

(function () {
  const API = "/api/v1";
  // A window being dragged resizes the box many times a second: fit and tell the shell only
  // once it has been still for this long.
  const SETTLE_MS = 250;
  const CLOSE_GRACE_MS = 5000;
  const LINKS = { wan: "WAN", lowpan: "6LoWPAN" };
  const encoder = new TextEncoder();

  function containerState() {
    return document.querySelector("[data-container-state]")?.dataset.containerState;
  }

  // What the page says when the gateway refused the shell: a browser's WebSocket learns
  // nothing of the HTTP answer, so ask the API about the container instead.
  async function refusal(id) {
    try {
      const response = await fetch(`${API}/containers/${encodeURIComponent(id)}`, { credentials: "same-origin" });
      if (response.status === 401) return "Could not open a shell: you are signed out; sign in again.";
      const container = response.ok ? await response.json() : null;
      if (container && container.state !== "running") {
        return `Could not open a shell: the container is ${container.state}, not running.`;
      }
    } catch {}
    return "Could not open a shell: you may have too many shells open (close one in another tab), or the device cannot be reached. Try again in a moment.";
  }

  function ending(message) {
    if (message.type === "error") return `The shell ended: ${message.detail} (${message.code}).`;
    if (message.reason === "exited") return `The shell exited with code ${message.exit_code ?? "unknown"}.`;
    if (message.reason === "closed") return "The shell was closed.";
    return `The shell ended (${message.reason}).`;
  }

  function setUpTerminal(panel) {
    const id = panel.dataset.terminal;
    const box = panel.querySelector("[data-terminal-screen]");
    const openButton = panel.querySelector("[data-terminal-open]");
    const closeButton = panel.querySelector("[data-terminal-close]");
    const slowNotice = panel.querySelector("[data-terminal-slow]");
    const status = panel.querySelector("[data-terminal-status]");
    const hint = panel.querySelector("[data-terminal-hint]");
    const stopped = panel.querySelector("[data-terminal-stopped]");
    let term = null;
    let fit = null;
    // { socket, ready, link, sent: "cols×rows", last: exit or error, closing, cancelled }
    let session = null;
    let settling = null;
    const say = (text) => (status.textContent = text);

    function showButtons() {
      const running = containerState() === "running";
      openButton.hidden = session !== null || !running;
      closeButton.hidden = session === null;
      stopped.hidden = session !== null || running;
    }

    function connected() {
      const link = LINKS[session.link] || session.link || "the device";
      say(`Connected over ${link} · ${term.cols}×${term.rows}`);
    }

    function send(data) {
      if (session?.socket.readyState === WebSocket.OPEN) session.socket.send(data);
    }

    function sendSize() {
      const size = `${term.cols}×${term.rows}`;
      if (!session || session.sent === size) return;
      session.sent = size;
      send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
      if (session.ready) connected();
    }

    function create() {
      term = new Terminal({
        cursorBlink: true,
        fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
        fontSize: 14,
        scrollback: 2000,
        theme: { background: getComputedStyle(box).backgroundColor }, // the stylesheet's
      });
      fit = new FitAddon.FitAddon();
      term.loadAddon(fit);
      term.open(box);
      term.onData((text) => send(encoder.encode(text)));
      // Some mouse reports are bytes, not text: one character per byte.
      term.onBinary((text) => send(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));
      term.onResize(sendSize);
      // Tab and the arrows belong to the shell: this is the keyboard's way out of the terminal.
      term.attachCustomKeyEventHandler((e) => {
        if (e.type === "keydown" && e.ctrlKey && (e.key === "]" || e.code === "BracketRight")) {
          (closeButton.hidden ? openButton : closeButton).focus();
          return false;
        }
        return true;
      });
      new ResizeObserver(() => {
        clearTimeout(settling);
        settling = setTimeout(() => !box.hidden && fit.fit(), SETTLE_MS);
      }).observe(box);
    }

    function open() {
      if (session) return;
      if (containerState() !== "running") return showButtons();
      box.hidden = false;
      hint.hidden = false;
      if (term) term.reset();
      else create();
      term.options.disableStdin = false;
      fit.fit();
      const query = new URLSearchParams({ cols: term.cols, rows: term.rows });
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${scheme}//${location.host}${API}/containers/${encodeURIComponent(id)}/shell?${query}`;
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      session = { socket, ready: false, last: null, link: "", sent: `${term.cols}×${term.rows}` };
      const current = session;
      socket.addEventListener("message", (m) => receive(current, m.data));
      socket.addEventListener("close", (e) => closed(current, e.code));
      say("Opening a shell…");
      showButtons();
      // xterm.js draws nothing while the terminal is out of sight.
      panel.scrollIntoView({ block: "nearest" });
      term.focus();
    }

    function receive(current, data) {
      if (typeof data !== "string") {
        term.write(new Uint8Array(data));
        return;
      }
      let message;
      try {
        message = JSON.parse(data);
      } catch {
        return;
      }
      if (message.type === "ready") {
        current.ready = true;
        current.link = message.link;
        slowNotice.hidden = !message.slow;
        sendSize(); // a resize while the shell was starting
        connected();
      } else if (message.type === "exit" || message.type === "error") {
        current.last = message;
      }
    }

    async function closed(current, code) {
      clearTimeout(current.closing);
      session = null;
      term.options.disableStdin = true;
      slowNotice.hidden = true;
      if (current.last) say(ending(current.last));
      else if (current.cancelled) say("The shell was not opened.");
      else if (current.ready) say(`The connection to the shell was lost (code ${code}).`);
      else say(await refusal(id));
      showButtons();
    }

    function close() {
      if (!session) return;
      const { socket } = session;
      if (socket.readyState === WebSocket.OPEN) {
        say("Closing the shell…");
        socket.send(JSON.stringify({ type: "close" }));
        // The gateway answers and closes; a connection gone quiet is closed from here.
        session.closing = setTimeout(() => socket.close(), CLOSE_GRACE_MS);
      } else {
        session.cancelled = true;
        socket.close();
      }
    }

    openButton.addEventListener("click", open);
    closeButton.addEventListener("click", close);
    // The state panel is swapped in again on every change of the container.
    document.addEventListener("htmx:afterSettle", showButtons);
    showButtons();
  }

  document.addEventListener("DOMContentLoaded", () => document.querySelectorAll("[data-terminal]").forEach(setUpTerminal));
})();
