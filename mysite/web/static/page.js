// mysite's page: run a task on a picture and draw what the model saw. Plain JavaScript, no libraries.
// Without JavaScript the form still posts to "/" and the server renders the answer.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PLAIN_WORDS = JSON.parse($("plain-words").textContent || "{}");

  const { withKey } = window.mysiteKey; // apikey.js

  /** "The image is too large. (413) the image is 12 MB; the limit is 10 MB" */
  function explain(status, body) {
    const reason = body && typeof body.reason === "string" ? body.reason : "";
    const lead = PLAIN_WORDS[reason] || PLAIN_WORDS[String(status)] || "The request failed.";
    const forOperators = (PLAIN_WORDS.operator_reasons || []).includes(reason); // said in the server's log
    const detail = body && typeof body.message === "string" && !forOperators ? body.message : "";
    return `${lead} (${status}) ${detail}`.trim();
  }

  /** Milliseconds from a "Server-Timing: total;dur=142.3" header, or null. */
  function serverMs(header) {
    const match = /dur=([\d.]+)/.exec(header || "");
    return match ? Number(match[1]) : null;
  }

  /** JSON with short arrays of numbers (boxes, probabilities) kept on one line. */
  function pretty(value) {
    return JSON.stringify(value, null, 2).replace(/\[\s+([-\d.e+,\s]+?)\s+\]/g,
      (_, inner) => `[${inner.split(/,\s*/).join(", ")}]`);
  }

  async function readBody(response) {
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { return await response.json(); } catch { return null; }
    }
    return null;
  }

  // ---------------------------------------------------------------- the task form
  const form = $("try");
  const task = $("task");
  const fileInput = $("image");
  const urlInput = $("url");
  const drop = $("drop");
  const canvas = $("canvas");
  const result = $("result");
  const jsonBox = $("json");
  const caption = $("caption");
  const extra = $("extra");
  const errorBox = $("error");
  const statusBox = $("status");
  const runButton = $("run");
  let picked = null; // the File chosen, dropped or pasted

  function selected() {
    const option = task.selectedOptions[0];
    return { path: option.value, output: option.dataset.output, label: option.dataset.model };
  }

  /** The value of the chosen task's model choice (e.g. its detector), or null when it has none. */
  function choiceValue() {
    const chooser = document.querySelector(`fieldset.choice[data-task="${CSS.escape(task.value)}"] select`);
    return chooser ? chooser.value : null;
  }

  /** Show the model choice of the chosen task, and only the options of the model the server will run. */
  function showParams() {
    const value = choiceValue();
    for (const fieldset of document.querySelectorAll("fieldset.choice")) {
      const on = fieldset.dataset.task === task.value;
      fieldset.hidden = !on;
      fieldset.disabled = !on;
    }
    for (const fieldset of document.querySelectorAll("fieldset.params")) {
      const on = fieldset.dataset.task === task.value
        && (fieldset.dataset.choice === undefined || fieldset.dataset.choice === value);
      fieldset.hidden = !on;
      fieldset.disabled = !on;
    }
  }

  /** The chosen task, or the first that finds things when it does not, with the model choice and options shown
   * for it: what the live camera (camera.js) runs on each frame. */
  function boxTask() {
    const option = selected().output === "boxes" ? task.selectedOptions[0]
      : task.querySelector('option[data-output="boxes"]');
    if (!option) return null;
    const params = new URLSearchParams();
    const chooser = document.querySelector(`fieldset.choice[data-task="${CSS.escape(option.value)}"] select`);
    if (chooser) params.set(chooser.name, chooser.value);
    const value = chooser ? chooser.value : undefined;
    for (const fieldset of document.querySelectorAll(`fieldset.params[data-task="${CSS.escape(option.value)}"]`)) {
      if (fieldset.dataset.choice !== undefined && fieldset.dataset.choice !== value) continue;
      for (const input of fieldset.querySelectorAll("input, select")) {
        if (input.value !== "") params.set(input.name, input.value);
      }
    }
    return { path: option.value, label: option.dataset.model, title: option.textContent.trim(), params };
  }
  window.mysitePage = { boxTask, explain, serverMs, labels: () => !labelsToggle || labelsToggle.checked };

  function setState(state, message = "") {
    document.body.dataset.state = state; // tests wait on this
    statusBox.textContent = message;
    runButton.disabled = state === "busy";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    setState("error");
  }

  function clearAnswer() {
    errorBox.hidden = true;
    jsonBox.textContent = "";
    extra.replaceChildren();
    delete canvas.dataset.boxes;
    delete canvas.dataset.landmarks;
    delete canvas.dataset.labels;
    drawn = null;
    const old = $("server-image");
    if (old) old.remove();
  }

  /** Put a picture on the canvas at its own size; CSS scales it to the page. */
  function paint(bitmap) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    canvas.hidden = false;
    result.hidden = false;
  }

  // What the canvas shows, kept to draw it again when the labels are switched or a box is pointed at.
  let drawn = null; // { bitmap, detections, label }
  const labelsToggle = $("labels");

  /** Boxes, landmarks and labels (draw.js), sized for the screen: a big photo shrunk to a phone still reads. */
  function drawBoxes(detections, defaultLabel, focus = -1) {
    const ctx = canvas.getContext("2d");
    const shrink = canvas.width / Math.max(1, canvas.clientWidth);
    const labels = !labelsToggle || labelsToggle.checked;
    const out = window.mysiteDraw.detections(ctx, detections, { label: defaultLabel, shrink, labels, focus });
    canvas.dataset.boxes = String(detections.length);
    canvas.dataset.landmarks = String(detections.reduce((n, d) => n + Object.keys(d.landmarks || {}).length, 0));
    canvas.dataset.labels = JSON.stringify(out.spots); // tests read where the labels went
    canvas.dataset.hiddenLabels = String(out.hidden);
    canvas.dataset.focus = String(focus);
  }

  function redraw(focus = -1) {
    if (!drawn) return;
    canvas.getContext("2d").drawImage(drawn.bitmap, 0, 0);
    drawBoxes(drawn.detections, drawn.label, focus);
  }

  /** The box under a pointer or a tap, in picture pixels. */
  function pointed(e) {
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * (canvas.width / r.width);
    const y = (e.clientY - r.top) * (canvas.height / r.height);
    return window.mysiteDraw.boxAt(drawn ? drawn.detections : [], x, y);
  }

  /** A list of labelled bars: digit probabilities or classifier predictions. */
  function bars(items, into) {
    const list = document.createElement("ol");
    list.className = "bars";
    const best = Math.max(...items.map((i) => i.probability));
    for (const item of items) {
      const li = document.createElement("li");
      if (item.probability === best) li.className = "best";
      const name = document.createElement("span");
      name.textContent = item.label;
      const meter = document.createElement("meter");
      meter.min = 0; meter.max = 1; meter.value = item.probability;
      meter.setAttribute("aria-label", `${item.label}: ${(100 * item.probability).toFixed(1)} percent`);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${(100 * item.probability).toFixed(1)} %`;
      li.append(name, meter, pct);
      list.append(li);
    }
    into.replaceChildren(list);
  }

  async function preview(file) {
    clearAnswer();
    try {
      paint(await createImageBitmap(file));
      caption.textContent = `${file.name || "Pasted image"}: ${canvas.width} × ${canvas.height}. Press Run.`;
    } catch {
      // Not something the browser can show; the server will say what it is.
      canvas.hidden = true;
      caption.textContent = `${file.name}: this browser cannot show it; Run asks the server anyway.`;
      result.hidden = false;
    }
  }

  function pick(file) {
    picked = file;
    urlInput.value = "";
    preview(file);
  }

  async function run() {
    const t = selected();
    const url = urlInput.value.trim();
    if (!picked && !url) {
      showError("Choose an image file, drop one on the box, or give the address of one.");
      return;
    }
    const params = new URLSearchParams();
    // The model choice and the options shown for it (showParams disables every other fieldset).
    for (const fieldset of document.querySelectorAll(`fieldset[data-task="${CSS.escape(t.path)}"]:enabled`)) {
      for (const input of fieldset.querySelectorAll("input, select")) {
        if (input.value !== "") params.set(input.name, input.value);
      }
    }
    clearAnswer();
    setState("busy", "Working…");
    const started = performance.now();
    let response;
    try {
      if (picked) {
        const body = new FormData();
        body.append("image", picked, picked.name || "image.png");
        response = await fetch(`${t.path}?${params}`, { method: "POST", body, headers: withKey({ Accept: "application/json" }) });
      } else {
        params.set("url", url);
        response = await fetch(`${t.path}?${params}`, { headers: withKey({ Accept: "application/json" }) });
      }
    } catch (err) {
      showError(`The server could not be reached (${err.message}).`);
      return;
    }
    try {
      await show(t, response, performance.now() - started, params);
    } catch (err) {
      showError(`The answer could not be shown: ${err.message}`);
    }
  }

  async function show(t, response, elapsed, params) {
    const server = serverMs(response.headers.get("Server-Timing"));
    const type = response.headers.get("Content-Type") || "";
    const times = server === null
      ? `Round trip ${elapsed.toFixed(0)} ms.`
      : `Server time: ${server.toFixed(0)} ms; round trip ${elapsed.toFixed(0)} ms.`;
    if (!response.ok) {
      const body = await readBody(response);
      jsonBox.textContent = body ? pretty(body) : "";
      result.hidden = !body;
      caption.textContent = times;
      showError(explain(response.status, body));
      return;
    }
    let summary = "";
    if (type.startsWith("image/")) {
      const blob = await response.blob();
      paint(await createImageBitmap(blob));
      jsonBox.textContent = `(the answer is an image: ${blob.size} bytes of ${type})`;
      summary = "The answer is this image.";
    } else {
      const body = await readBody(response);
      jsonBox.textContent = body ? pretty(body) : "(no JSON in the answer)";
      if (body && Array.isArray(body.result)) {
        if (picked) {
          const bitmap = await createImageBitmap(picked);
          paint(bitmap);
          drawn = { bitmap, detections: body.result, label: t.label };
          drawBoxes(body.result, t.label);
        } else {
          // The picture lives behind the URL: the server, which fetched it, draws the boxes.
          params.set("output", "image");
          const drawn = await fetch(`${t.path}?${params}`, { headers: withKey({}) });
          if (!drawn.ok) throw new Error(explain(drawn.status, await readBody(drawn)));
          paint(await createImageBitmap(await drawn.blob()));
          canvas.dataset.boxes = String(body.result.length);
        }
        const n = body.result.length;
        summary = `${n} ${n === 1 ? "box" : "boxes"} found.`;
      } else if (body && typeof body.digit === "number") {
        summary = `It reads ${body.digit}.`;
        bars((body.probabilities || []).map((p, i) => ({ label: String(i), probability: p })), extra);
      } else if (body && Array.isArray(body.predictions)) {
        const top = body.predictions[0];
        summary = top ? `Most likely: ${top.label}.` : "";
        bars(body.predictions, extra);
      }
    }
    caption.textContent = `${summary} ${times}`.trim();
    result.hidden = false;
    setState("done", "");
  }

  if (form && task) {
    // The options need this script to follow the chosen task; without it the server's defaults apply.
    for (const details of document.querySelectorAll("details.options")) details.hidden = false;
    task.addEventListener("change", showParams);
    for (const chooser of document.querySelectorAll("fieldset.choice select")) chooser.addEventListener("change", showParams);
    showParams();
    fileInput.addEventListener("change", () => {
      if (fileInput.files[0]) pick(fileInput.files[0]);
    });
    urlInput.addEventListener("input", () => {
      if (urlInput.value.trim()) {
        picked = null;
        fileInput.value = "";
      }
    });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, () => drop.classList.remove("over"));
    }
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
      if (file) {
        pick(file);
        return;
      }
      const uri = (e.dataTransfer.getData("text/uri-list") || "").split("\n")[0].trim();
      if (uri) {
        urlInput.value = uri;
        picked = null;
      }
    });
    document.addEventListener("paste", (e) => {
      const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
      if (file) pick(file);
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      run();
    });
    if (labelsToggle) {
      $("labels-switch").hidden = false; // the switch redraws the canvas: it needs this script
      labelsToggle.addEventListener("change", () => redraw());
    }
    // Hover (mouse) or tap (finger): the label of the box under it, even one left out for lack of room.
    let focus = -1;
    const point = (e) => {
      const i = pointed(e);
      if (i !== focus) { focus = i; redraw(i); }
    };
    canvas.addEventListener("pointermove", point);
    canvas.addEventListener("pointerdown", point);
    canvas.addEventListener("pointerleave", () => { if (focus !== -1) { focus = -1; redraw(); } });
    setState("ready");
  }

  // ---------------------------------------------------------------- the digit pad
  const digits = $("digits");
  const pad = $("pad");
  if (digits && pad) {
    const ctx = pad.getContext("2d");
    const answer = $("digit-answer");
    const padError = $("pad-error");
    const padBars = $("digit-bars");
    const clear = () => {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, pad.width, pad.height);
      answer.textContent = "";
      padBars.replaceChildren();
      padError.hidden = true;
      digits.dataset.state = "empty";
    };
    const at = (e) => {
      const r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
    };
    let drawing = false;
    pad.addEventListener("pointerdown", (e) => {
      drawing = true;
      pad.setPointerCapture(e.pointerId);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 20;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...at(e));
      ctx.lineTo(...at(e));
      ctx.stroke();
      digits.dataset.state = "drawn";
    });
    pad.addEventListener("pointermove", (e) => {
      if (!drawing) return;
      ctx.lineTo(...at(e));
      ctx.stroke();
    });
    for (const name of ["pointerup", "pointercancel"]) pad.addEventListener(name, () => { drawing = false; });

    $("pad-clear").addEventListener("click", clear);
    $("pad-read").addEventListener("click", async () => {
      padError.hidden = true;
      if (digits.dataset.state === "empty") { // nothing drawn since the pad was cleared: no need to ask
        padError.textContent = "The pad is empty: draw a digit on it first.";
        padError.hidden = false;
        digits.dataset.state = "error";
        digits.dataset.ink = "none";
        return;
      }
      digits.dataset.state = "busy";
      const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
      const body = new FormData();
      body.append("image", blob, "digit.png");
      try {
        const started = performance.now();
        const response = await fetch(digits.dataset.endpoint, { method: "POST", body, headers: withKey({ Accept: "application/json" }) });
        const data = await readBody(response);
        if (!response.ok || !data || typeof data.digit !== "number") {
          throw new Error(response.ok ? "the answer holds no digit" : explain(response.status, data));
        }
        const server = serverMs(response.headers.get("Server-Timing"));
        answer.innerHTML = "";
        answer.append("It reads ");
        const strong = document.createElement("strong");
        strong.id = "digit";
        strong.textContent = String(data.digit);
        const took = `round trip ${(performance.now() - started).toFixed(0)} ms`;
        const times = server === null ? took : `server ${server.toFixed(0)} ms, ${took}`;
        answer.append(strong, ` (${(100 * (data.probability ?? 0)).toFixed(1)} % sure; ${times})`);
        bars((data.probabilities || []).map((p, i) => ({ label: String(i), probability: p })), padBars);
        digits.dataset.state = "done";
      } catch (err) {
        padError.textContent = err.message;
        padError.hidden = false;
        digits.dataset.state = "error";
      }
    });
    clear();
  }
})();
