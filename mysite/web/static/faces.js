// The "Faces with names" card: register a person from photos, list and forget people, and name the
// faces of a photo on its boxes (draw.js places the labels by the server drawings' rules).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const card = $("people");
  if (!card) return;
  const { withKey } = window.mysiteKey; // apikey.js
  const { explain } = window.mysitePage; // page.js
  const errorBox = $("people-error");
  const canvas = $("who-canvas");
  let shown = null; // { bitmap, detections }: kept to draw again when a box is pointed at

  function setState(state, message = "") {
    card.dataset.state = state; // tests wait on this
    $("people-status").textContent = message;
    errorBox.hidden = state !== "error";
    if (state === "error") errorBox.textContent = message;
  }

  /** Headers for a change of the store: the admin key when one is typed, else the page's API key. */
  function adminHeaders() {
    const admin = $("admin-key");
    const key = admin ? admin.value.trim() : "";
    return key ? { Accept: "application/json", "X-API-Key": key } : withKey({ Accept: "application/json" });
  }

  async function call(path, options) {
    const response = await fetch(path, options);
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) throw Object.assign(new Error(explain(response.status, body)), { status: response.status });
    return body;
  }

  const personPath = (name) => `/faces/${encodeURIComponent(name)}`;

  async function list() {
    const body = await call("/faces", { headers: withKey({ Accept: "application/json" }) });
    const people = body.faces || [];
    const into = $("people-list");
    into.replaceChildren();
    if (!people.length) {
      into.textContent = "Nobody is registered yet.";
      return;
    }
    const ul = document.createElement("ul");
    for (const { name, count } of people) {
      const li = document.createElement("li");
      const forget = document.createElement("button");
      forget.type = "button";
      forget.className = "secondary small";
      forget.textContent = "Forget";
      forget.setAttribute("aria-label", `Forget ${name}`);
      forget.addEventListener("click", () => act(async () => {
        await call(personPath(name), { method: "DELETE", headers: adminHeaders() });
        await list();
        return `${name} is forgotten.`;
      }));
      li.append(`${name} (${count} ${count === 1 ? "photo" : "photos"}) `, forget);
      ul.append(li);
    }
    into.append(ul);
  }

  async function act(work) {
    setState("busy", "Working…");
    try {
      setState("done", await work());
    } catch (err) {
      setState("error", err.message);
    }
  }

  function draw(focus = -1) {
    if (!shown) return;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(shown.bitmap, 0, 0);
    const shrink = canvas.width / Math.max(1, canvas.clientWidth);
    const out = window.mysiteDraw.detections(ctx, shown.detections, { shrink, focus });
    canvas.dataset.labels = JSON.stringify(out.spots); // tests read where the labels went
  }

  $("register").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("person-name").value.trim();
    const files = [...$("person-photos").files];
    if (!name || !files.length) {
      setState("error", "Type the person's name and choose at least one photo of them.");
      return;
    }
    act(async () => {
      const body = new FormData();
      files.forEach((f, i) => body.append(`image${i + 1}`, f, f.name || `photo${i + 1}.jpg`));
      const answer = await call(personPath(name), { method: "POST", body, headers: adminHeaders() });
      await list();
      return `${name}: ${answer.added} ${answer.added === 1 ? "face" : "faces"} registered.`;
    });
  });

  $("who").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("who-photo").files[0];
    if (!file) {
      setState("error", "Choose a photo to recognize.");
      return;
    }
    act(async () => {
      const body = new FormData();
      body.append("image", file, file.name || "photo.jpg");
      const answer = await call("/recognize", { method: "POST", body, headers: withKey({ Accept: "application/json" }) });
      const faces = answer.result || [];
      // Named faces first, so their labels get the free places before the unknown ones.
      const detections = faces.map((f) => (f.name
        ? { box: f.box, label: f.name, confidence: f.confidence }
        : { box: f.box, label: "unknown" })).sort((a, b) => (b.label !== "unknown") - (a.label !== "unknown"));
      const bitmap = await createImageBitmap(file);
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      $("who-result").hidden = false;
      shown = { bitmap, detections };
      draw();
      const names = detections.filter((d) => d.label !== "unknown").map((d) => d.label);
      canvas.dataset.names = JSON.stringify(names);
      canvas.dataset.namedBoxes = JSON.stringify(detections.filter((d) => d.label !== "unknown").map((d) => d.box));
      const caption = `${faces.length} ${faces.length === 1 ? "face" : "faces"}: ${names.length ? names.join(", ") : "nobody known"}.`;
      $("who-caption").textContent = caption;
      return caption;
    });
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!shown) return;
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * (canvas.width / r.width);
    const y = (e.clientY - r.top) * (canvas.height / r.height);
    draw(window.mysiteDraw.boxAt(shown.detections, x, y));
  });
  canvas.addEventListener("pointerleave", () => draw());

  list().then(() => setState("ready"), (err) => {
    if (err.status !== 401) {
      setState("error", err.message);
      return;
    }
    // The server wants a key: the list shows once the visitor has typed it in the API key field.
    $("people-list").textContent = "Type the API key above to see who is registered.";
    setState("ready");
    const key = $("api-key");
    if (key) key.addEventListener("change", () => list().catch((e) => setState("error", e.message)));
  });
})();
