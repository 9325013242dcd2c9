// A tiny line chart on a canvas: the last N values, scaled to the largest, with the latest
// value written in the corner. No dependencies.

/** Draws `values` (numbers, oldest first) on `canvas`. */
export function drawLine(canvas, values, { color = "#0a58a8", unit = "" } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 80;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = 4;
  const top = 18;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = "#d5dae1";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad, height - pad);
  ctx.lineTo(width - pad, height - pad);
  ctx.stroke();
  if (values.length > 1) {
    const step = (width - 2 * pad) / (values.length - 1);
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = pad + i * step;
      const y = height - pad - (Math.max(0, v) / max) * (height - pad - top);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#16191d";
  ctx.font = "12px system-ui, sans-serif";
  const last = values.length ? values[values.length - 1] : 0;
  ctx.fillText(`now ${format(last)}${unit}   max ${format(max)}${unit}`, pad, 13);
}

function format(n) {
  if (!Number.isFinite(n)) return "0";
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}
