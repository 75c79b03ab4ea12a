// The live camera: frames from getUserMedia, scaled in the browser and sent to the server one at a time
// (the next frame is taken only when the last answer is in), with what it found drawn over the video.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const section = $("camera");
  if (!section) return;
  const video = $("camera-video");
  const overlay = $("camera-overlay");
  const live = section.querySelector(".live");
  const startButton = $("camera-start");
  const stopButton = $("camera-stop");
  const widthSelect = $("camera-width");
  const facingSelect = $("camera-facing");
  const stats = $("camera-stats");
  const errorBox = $("camera-error");
  const { withKey } = window.mysiteKey; // apikey.js
  const page = window.mysitePage; // page.js
  const grab = document.createElement("canvas"); // the scaled frame that is sent
  const FPS_WINDOW_MS = 2000; // frames per second over the last two seconds
  const RETRY_MS = 1000; // after a busy or failed answer

  let stream = null;
  let running = false;
  let run = 0; // which start() the loop belongs to: a loop from before a restart ends by itself
  let inFlight = 0;
  let done = []; // when each recent answer came in

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

  function setState(state) { section.dataset.state = state; } // tests wait on this

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  async function start() {
    errorBox.hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail("This browser gives no camera to this page: cameras need a secure page (https://, or localhost).");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { facingMode: facingSelect.value, width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (err) {
      fail(`The camera could not be started (${err.name === "NotAllowedError" ? "permission was refused" : err.message}).`);
      return;
    }
    video.srcObject = stream;
    await video.play();
    live.hidden = false;
    startButton.disabled = true;
    stopButton.disabled = false;
    running = true;
    done = [];
    section.dataset.frames = "0";
    section.dataset.maxInFlight = "0";
    setState("on");
    run += 1;
    loop(run);
  }

  function stop() {
    running = false;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    live.hidden = true;
    startButton.disabled = false;
    stopButton.disabled = true;
    setState("off");
  }

  /** One frame: scaled to the chosen width, sent, answered, drawn. Returns false to wait before the next. */
  async function once() {
    const task = page.boxTask();
    if (!task) {
      fail("None of this server's tasks finds things in a picture.");
      stop();
      return false;
    }
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    const scale = Math.min(1, Number(widthSelect.value) / vw);
    grab.width = Math.round(vw * scale);
    grab.height = Math.round(vh * scale);
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.8));
    const body = new FormData();
    body.append("image", blob, "frame.jpg");
    inFlight += 1;
    section.dataset.maxInFlight = String(Math.max(Number(section.dataset.maxInFlight), inFlight));
    let response;
    let answer = null;
    try {
      response = await fetch(`${task.path}?${task.params}`, {
        method: "POST", body, headers: withKey({ Accept: "application/json" }),
      });
      answer = await response.json().catch(() => null);
    } catch (err) {
      fail(`The server could not be reached (${err.message}).`);
      return false;
    } finally {
      inFlight -= 1;
    }
    if (!response.ok || !answer || !Array.isArray(answer.result)) {
      fail(page.explain(response.status, answer));
      if (response.status === 401 || response.status === 404) stop();
      return false;
    }
    errorBox.hidden = true;
    const now = performance.now();
    done.push(now);
    while (done.length && done[0] < now - FPS_WINDOW_MS) done.shift();
    draw(answer.result, scale, task.label);
    const frames = Number(section.dataset.frames) + 1;
    section.dataset.frames = String(frames);
    section.dataset.frameSize = `${grab.width}x${grab.height}`;
    section.dataset.boxes = String(answer.result.length);
    const fps = done.length > 1 ? (1000 * (done.length - 1)) / (done[done.length - 1] - done[0]) : 0;
    section.dataset.fps = fps.toFixed(1);
    const server = page.serverMs(response.headers.get("Server-Timing"));
    const n = answer.result.length;
    stats.textContent = `${fps.toFixed(1)} frames/s · server time ${server === null ? "?" : server.toFixed(0)} ms · `
      + `${grab.width}×${grab.height} · ${n} found · ${task.title}`;
    return true;
  }

  /** The answer's boxes (in sent-frame pixels) drawn over the video, in the video's own pixels. */
  function draw(result, scale, label) {
    overlay.width = video.videoWidth;
    overlay.height = video.videoHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    const back = (v) => v / scale;
    const dets = result.map((d) => ({
      ...d,
      box: d.box.map(back),
      landmarks: Object.fromEntries(Object.entries(d.landmarks || {}).map(([k, p]) => [k, p.map(back)])),
    }));
    const shrink = overlay.width / Math.max(1, overlay.clientWidth);
    window.mysiteDraw.detections(ctx, dets, { label, shrink, labels: page.labels() });
  }

  async function loop(id) {
    while (running && id === run) {
      // Never two frames in flight, even just after a restart while the last answer is on its way.
      if (video.readyState < 2 || !video.videoWidth || inFlight > 0) {
        await nextFrame();
        continue;
      }
      const ok = await once();
      if (!running || id !== run) break;
      await (ok ? nextFrame() : sleep(RETRY_MS));
    }
  }

  $("camera-controls").hidden = false; // without this script the section says the camera needs it
  startButton.addEventListener("click", start);
  // A phone's other camera: start again with it.
  facingSelect.addEventListener("change", () => { if (running) { stop(); start(); } });
  stopButton.addEventListener("click", stop);
  // A phone that locks or switches apps: let go of the camera.
  document.addEventListener("visibilitychange", () => { if (document.hidden && running) stop(); });
})();
