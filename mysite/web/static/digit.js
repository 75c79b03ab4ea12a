// The MNIST Flask API's page flow, in plain JavaScript: post a file (multipart field "img") or the drawing
// (a data URL as the raw body) to /predict/, and show the answer text, the bare digit.
"use strict";
(() => {
  const form = document.getElementById("digit-form");
  const pad = document.getElementById("pad");
  const result = document.getElementById("result");
  const error = document.getElementById("error");
  const ctx = pad.getContext("2d");

  const { withKey } = window.mysiteKey; // apikey.js

  function clear() {
    ctx.fillStyle = "#fff"; // white paper, as MNIST pictures are read: dark ink on light
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  function setState(state) { document.body.dataset.state = state; }

  async function send(body, headers) {
    result.textContent = "";
    error.hidden = true;
    setState("busy");
    let response;
    try {
      response = await fetch(form.action, { method: "POST", body, headers: withKey(headers || {}) });
    } catch (err) {
      showError(`The server could not be reached (${err.message}).`);
      return;
    }
    const text = await response.text();
    if (response.ok) {
      result.textContent = text.trim();
      setState("done");
      return;
    }
    let message = text;
    try { message = JSON.parse(text).message || text; } catch { /* not JSON: show it as it came */ }
    showError(`No digit (${response.status}): ${message}`);
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
    setState("error");
  }

  // Drawing with mouse, pen or finger.
  let last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  };
  pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); last = at(e); });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 18;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  for (const name of ["pointerup", "pointercancel"]) pad.addEventListener(name, () => { last = null; });

  document.getElementById("clear").addEventListener("click", () => { clear(); result.textContent = ""; });
  // The drawing goes as that API's canvas client sent it: the data URL itself is the body.
  document.getElementById("read").addEventListener("click", () => send(pad.toDataURL("image/png"),
    { "Content-Type": "text/plain" }));
  // A chosen file goes as that API's jQuery call sent it: the form as multipart, field "img".
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const file = document.getElementById("img").files[0];
    if (!file) { showError("Choose a picture of a digit first."); return; }
    send(new FormData(form));
  });

  clear();
  setState("ready");
})();
