// Boxes, landmarks and labels drawn on a canvas, by the same rules as the server's drawings
// (mysite/vision/layout.py): a label sits outside every box and never covers a face or another
// label; one with no free place is left out, and shown only for the box a person points at or taps.
"use strict";

window.mysiteDraw = (() => {
  const BOX = "#ffff00"; // the same yellow as the server's drawn images (mysite/vision/draw.py)
  const INK = "#000000";

  const overlaps = (a, b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  const MAX_LABELS = 256; // labels tried for the first 256 labelled boxes only, as layout.py

  /** The places tried for a w x h label of a box, best first: above, below, beside. */
  function candidates([x1, y1, x2, y2], w, h, gap) {
    return [[x1, y1 - gap - h], [x1, y2 + gap], [x2 - w, y1 - gap - h], [x2 - w, y2 + gap],
      [x2 + gap, y1], [x1 - gap - w, y1]].map(([x, y]) => [x, y, x + w, y + h]);
  }

  /** A rectangle for each label (or null): inside the picture, off every box and every other label. */
  function placeLabels(boxes, sizes, width, height, gap) {
    const padded = boxes.map(([x1, y1, x2, y2]) => [x1 - gap, y1 - gap, x2 + gap + 1, y2 + gap + 1]);
    const placed = [];
    let tried = 0;
    return boxes.map((box, i) => {
      if (!sizes[i] || tried >= MAX_LABELS) return null;
      tried += 1;
      const spot = candidates(box, sizes[i][0], sizes[i][1], gap + 1).find((r) =>
        r[0] >= 0 && r[1] >= 0 && r[2] <= width && r[3] <= height
        && !padded.some((p) => overlaps(r, p)) && !placed.some((p) => overlaps(r, p)));
      if (spot) placed.push(spot);
      return spot || null;
    });
  }

  /** A landmark's radius: about 1/30 of its face, at least 1 px, at most the line. */
  function markRadius([x1, y1, x2, y2], line) {
    return Math.max(1, Math.min(line, Math.round(Math.min(x2 - x1, y2 - y1) / 30)));
  }

  function labelText(det, fallback) {
    let text = det.label || fallback || "";
    if (typeof det.confidence === "number") text = `${text} ${det.confidence.toFixed(2)}`.trim();
    return text;
  }

  function tab(ctx, text, [x1, y1, x2, y2], pad) {
    ctx.fillStyle = BOX;
    ctx.fillRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = INK;
    ctx.fillText(text, x1 + pad, y1 + pad);
  }

  /**
   * Draw ``detections`` on ``ctx`` (its canvas is in picture pixels). ``shrink``: picture pixels per
   * CSS pixel, so lines and text read the same on a phone and on a laptop. ``labels``: false draws
   * none. ``focus``: the index of a box whose label is drawn anyway (pointed at), beside the box.
   * Returns the label rectangles drawn and how many labels were left out.
   */
  function detections(ctx, dets, { label = "", shrink = 1, labels = true, focus = -1 } = {}) {
    const { width, height } = ctx.canvas;
    const line = 2 * Math.max(1, Math.round(shrink)); // even: the edge lands on whole pixels
    const fontPx = Math.round(13 * Math.max(1, shrink));
    const pad = Math.round(fontPx / 5);
    const boxes = dets.map((d) => d.box.map(Math.round));
    ctx.lineWidth = line;
    ctx.strokeStyle = BOX;
    ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    boxes.forEach(([x1, y1, x2, y2], i) => {
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const radius = markRadius(boxes[i], line / 2);
      const ring = Math.min(x2 - x1, y2 - y1) >= 60;
      // Centred on the pixel (a canvas coordinate is a pixel's corner), as OpenCV draws them.
      for (const [x, y] of Object.values(dets[i].landmarks || {}).map(([px, py]) => [px + 0.5, py + 0.5])) {
        if (ring) {
          ctx.beginPath();
          ctx.arc(x, y, radius + 1, 0, 2 * Math.PI);
          ctx.fillStyle = INK;
          ctx.fill();
        }
        ctx.beginPath();
        ctx.arc(x, y, radius, 0, 2 * Math.PI);
        ctx.fillStyle = BOX;
        ctx.fill();
      }
    });
    const texts = dets.map((d) => (labels ? labelText(d, label) : ""));
    const sizes = texts.map((t) => (t ? [Math.ceil(ctx.measureText(t).width) + 2 * pad, fontPx + 2 * pad] : null));
    const spots = placeLabels(boxes, sizes, width, height, line / 2);
    spots.forEach((spot, i) => { if (spot && i !== focus) tab(ctx, texts[i], spot, pad); });
    if (focus >= 0 && focus < dets.length) {
      // The box pointed at: its label where it fits best, even over a neighbour, for as long as it is pointed at.
      const text = labelText(dets[focus], label);
      const w = Math.ceil(ctx.measureText(text).width) + 2 * pad;
      const h = fontPx + 2 * pad;
      const spot = spots[focus] || candidates(boxes[focus], w, h, line / 2 + 1)
        .map(([x1, y1]) => {
          const x = Math.min(Math.max(0, x1), width - w);
          const y = Math.min(Math.max(0, y1), height - h);
          return [x, y, x + w, y + h];
        })[0];
      if (text) tab(ctx, text, spot, pad);
    }
    return { spots: spots.filter(Boolean), hidden: spots.filter((s, i) => !s && texts[i]).length };
  }

  /** The index of the smallest box holding the point (picture pixels), or -1. */
  function boxAt(dets, x, y) {
    let best = -1;
    let area = Infinity;
    dets.forEach((d, i) => {
      const [x1, y1, x2, y2] = d.box;
      const a = (x2 - x1) * (y2 - y1);
      if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && a < area) { best = i; area = a; }
    });
    return best;
  }

  return { detections, boxAt, placeLabels, BOX, INK };
})();
