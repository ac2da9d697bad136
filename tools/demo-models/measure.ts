// Simple image measurements for the demo models' "shapes world" (tools/demo-models/README.md): where the object of
// the prompt's colour is, how big, whether it is star-shaped, and what style the picture is in (the general model
// draws textured noisy backgrounds, the cartoon model plain light ones with dark outlines).

import sharp from 'sharp';
import { median } from '../stats.js';

export type Colour = 'red' | 'green' | 'blue' | 'yellow';
export type Position = 'left' | 'right' | 'top' | 'bottom' | 'center';

/** Hue intervals in degrees [from, to) of each prompt colour (palette hues: red 0, yellow 52, green 130, blue 227). */
export const HUE_RANGES: Readonly<Record<Colour, readonly (readonly [number, number])[]>> = {
  red: [
    [340, 360],
    [0, 20],
  ],
  yellow: [[40, 75]],
  green: [[80, 170]],
  blue: [[190, 260]],
};
/** HSV saturation and chroma (max - min, 0..1) a pixel needs to count as coloured. */
export const MIN_SATURATION = 0.35;
export const MIN_CHROMA = 0.2;
/** A 5-point star fills about 60 % of its convex hull; circles, squares and triangles 80-100 % at these sizes. */
export const STAR_SOLIDITY = 0.78;
/** A radial-profile peak counts as a point when it rises this fraction of the largest radius above its valleys. */
export const POINT_PROMINENCE = 0.2;
/** Background pixels within this many pixels (Chebyshev) of the object are left out of the style measurements. */
export const BACKGROUND_MARGIN = 2;

export interface ShapeMeasure {
  readonly width: number;
  readonly height: number;
  /** Whether any pixel has the prompt's colour. */
  readonly found: boolean;
  /** Pixels of the object: the largest 4-connected region of the colour, holes filled. */
  readonly pixels: number;
  /** pixels / image pixels. */
  readonly area: number;
  /** Centre of mass, normalised to [0, 1] (x to the right, y down); null when not found. */
  readonly centroid: { readonly x: number; readonly y: number } | null;
  /** area / area of the convex hull of the object's pixel squares (1 for a filled rectangle, ~0.6 for a star). */
  readonly solidity: number | null;
  /** Prominent peaks of the radius-by-angle profile around the centroid: ~5 for a star, 3 triangle, 4 square, 0 circle. */
  readonly points: number;
  /** solidity < STAR_SOLIDITY and at least 4 points. */
  readonly starLike: boolean;
  /** Robust standard deviation (1.4826 × median absolute deviation) of luminance (0..1) over the background away
   *  from the object: the spread of texture and lighting, blind to the few outline pixels the margin misses. */
  readonly backgroundStd: number;
  /** Median |luminance difference| of adjacent background pixels: texture and noise (≈0 on flat backgrounds). */
  readonly backgroundRoughness: number;
  /** Mean background luminance minus mean luminance of the 1-pixel ring around the object (dark outline → large). */
  readonly outlineContrast: number;
}

function luminance(r: number, g: number, b: number): number {
  return (0.299 * r + 0.587 * g + 0.114 * b) / 255;
}

/** Pixels of `colour` by hue, saturation and chroma. */
export function colourMask(rgb: Uint8Array, width: number, height: number, colour: Colour): Uint8Array {
  const mask = new Uint8Array(width * height);
  const ranges = HUE_RANGES[colour];
  for (let i = 0; i < width * height; i++) {
    const r = rgb[3 * i]! / 255;
    const g = rgb[3 * i + 1]! / 255;
    const b = rgb[3 * i + 2]! / 255;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const chroma = max - min;
    if (chroma < MIN_CHROMA || max <= 0 || chroma / max < MIN_SATURATION) continue;
    let hue: number;
    if (max === r) hue = (((g - b) / chroma) % 6 + 6) % 6;
    else if (max === g) hue = (b - r) / chroma + 2;
    else hue = (r - g) / chroma + 4;
    hue *= 60;
    if (ranges.some(([from, to]) => hue >= from && hue < to)) mask[i] = 1;
  }
  return mask;
}

/** The largest 4-connected region of `mask` (1s), with enclosed holes filled. */
export function mainObject(mask: Uint8Array, width: number, height: number): Uint8Array {
  const n = width * height;
  const label = new Int32Array(n).fill(-1);
  const stack: number[] = [];
  let best = -1;
  let bestSize = 0;
  let next = 0;
  const flood = (start: number, inside: (i: number) => boolean, id: number): number => {
    let size = 0;
    label[start] = id;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop()!;
      size++;
      const x = i % width;
      const y = (i - x) / width;
      const visit = (j: number): void => {
        if (label[j] === -1 && inside(j)) {
          label[j] = id;
          stack.push(j);
        }
      };
      if (x > 0) visit(i - 1);
      if (x < width - 1) visit(i + 1);
      if (y > 0) visit(i - width);
      if (y < height - 1) visit(i + width);
    }
    return size;
  };
  for (let i = 0; i < n; i++) {
    if (mask[i] !== 1 || label[i] !== -1) continue;
    const size = flood(i, (j) => mask[j] === 1, next);
    if (size > bestSize) {
      bestSize = size;
      best = next;
    }
    next++;
  }
  const out = new Uint8Array(n);
  if (best < 0) return out;
  for (let i = 0; i < n; i++) if (label[i] === best) out[i] = 1;
  // Holes: whatever the outside (reached from the border without crossing the object) does not reach.
  const outside = new Int32Array(n).fill(-1);
  const borderFlood = (start: number): void => {
    if (out[start] === 1 || outside[start] !== -1) return;
    outside[start] = 1;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop()!;
      const x = i % width;
      const y = (i - x) / width;
      for (const [j, ok] of [
        [i - 1, x > 0],
        [i + 1, x < width - 1],
        [i - width, y > 0],
        [i + width, y < height - 1],
      ] as const) {
        if (ok && out[j] !== 1 && outside[j] === -1) {
          outside[j] = 1;
          stack.push(j);
        }
      }
    }
  };
  for (let x = 0; x < width; x++) {
    borderFlood(x);
    borderFlood((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    borderFlood(y * width);
    borderFlood(y * width + width - 1);
  }
  for (let i = 0; i < n; i++) if (out[i] !== 1 && outside[i] === -1) out[i] = 1;
  return out;
}

function cross(o: readonly [number, number], a: readonly [number, number], b: readonly [number, number]): number {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

/** Area of the convex hull of the squares of the set pixels (monotone chain over pixel corners). */
export function hullArea(mask: Uint8Array, width: number, height: number): number {
  // Per row only the leftmost and rightmost pixel can contribute hull corners.
  const pts: [number, number][] = [];
  for (let y = 0; y < height; y++) {
    let lo = -1;
    let hi = -1;
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x] !== 1) continue;
      if (lo < 0) lo = x;
      hi = x;
    }
    if (lo < 0) continue;
    pts.push([lo, y], [lo, y + 1], [hi + 1, y], [hi + 1, y + 1]);
  }
  if (pts.length < 3) return 0;
  pts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const half = (seq: readonly [number, number][]): [number, number][] => {
    const h: [number, number][] = [];
    for (const p of seq) {
      while (h.length >= 2 && cross(h[h.length - 2]!, h[h.length - 1]!, p) <= 0) h.pop();
      h.push(p);
    }
    h.pop();
    return h;
  };
  const hull = [...half(pts), ...half([...pts].reverse())];
  let twice = 0;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i]!;
    const b = hull[(i + 1) % hull.length]!;
    twice += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(twice) / 2;
}

/** Number of prominent peaks of the object's outer radius as a function of angle around (cx, cy). */
export function countPoints(mask: Uint8Array, width: number, height: number, cx: number, cy: number): number {
  const bins = 48;
  const profile = new Float64Array(bins).fill(-1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x] !== 1) continue;
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const r = Math.hypot(dx, dy) + 0.5;
      const b = Math.floor(((Math.atan2(dy, dx) / (2 * Math.PI) + 1) % 1) * bins) % bins;
      if (r > profile[b]!) profile[b] = r;
    }
  }
  // Bins no pixel centre fell into (small objects): interpolate between the nearest filled bins.
  const filled = [...profile.keys()].filter((b) => profile[b]! >= 0);
  if (filled.length < 3) return 0;
  for (let b = 0; b < bins; b++) {
    if (profile[b]! >= 0) continue;
    let l = 1;
    while (profile[(b - l + bins) % bins]! < 0) l++;
    let r = 1;
    while (profile[(b + r) % bins]! < 0) r++;
    const lv = profile[(b - l + bins) % bins]!;
    const rv = profile[(b + r) % bins]!;
    profile[b] = lv + ((rv - lv) * l) / (l + r);
  }
  const at = (i: number): number => profile[((i % bins) + bins) % bins]!;
  const smooth = Float64Array.from({ length: bins }, (_, i) => (at(i - 1) + 2 * at(i) + at(i + 1)) / 4);
  const s = (i: number): number => smooth[((i % bins) + bins) % bins]!;
  const maxR = Math.max(...smooth);
  const reach = 4; // ±30°: star tips are 72° apart
  let points = 0;
  for (let i = 0; i < bins; i++) {
    let isPeak = true;
    for (let d = 1; d <= reach && isPeak; d++) {
      // Strict on one side so a flat top counts once.
      if (s(i - d) >= s(i) || s(i + d) > s(i)) isPeak = false;
    }
    if (!isPeak) continue;
    let valley = Infinity;
    for (let d = 1; d <= bins / 8; d++) valley = Math.min(valley, s(i - d), s(i + d));
    if (s(i) - valley >= POINT_PROMINENCE * maxR) points++;
  }
  return points;
}

/** Measures the object of `colour` in an interleaved 8-bit RGB image. */
export function measureRgb(rgb: Uint8Array, width: number, height: number, colour: Colour): ShapeMeasure {
  const n = width * height;
  const obj = mainObject(colourMask(rgb, width, height, colour), width, height);
  const lum = new Float64Array(n);
  for (let i = 0; i < n; i++) lum[i] = luminance(rgb[3 * i]!, rgb[3 * i + 1]!, rgb[3 * i + 2]!);

  let pixels = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    if (obj[i] !== 1) continue;
    pixels++;
    sx += (i % width) + 0.5;
    sy += Math.floor(i / width) + 0.5;
  }

  // Chebyshev distance bands around the object: ring (distance 1) and the excluded margin.
  const near = new Uint8Array(n); // 0 far background, 1 ring, 2 margin, 3 object
  for (let i = 0; i < n; i++) if (obj[i] === 1) near[i] = 3;
  for (let i = 0; i < n; i++) {
    if (obj[i] !== 1) continue;
    const x = i % width;
    const y = (i - x) / width;
    for (let dy = -BACKGROUND_MARGIN; dy <= BACKGROUND_MARGIN; dy++) {
      for (let dx = -BACKGROUND_MARGIN; dx <= BACKGROUND_MARGIN; dx++) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= width || yy >= height) continue;
        const j = yy * width + xx;
        if (near[j] === 3) continue;
        const band = Math.max(Math.abs(dx), Math.abs(dy)) === 1 ? 1 : 2;
        if (near[j] === 0 || band < near[j]!) near[j] = band;
      }
    }
  }
  let bgCount = 0;
  let bgSum = 0;
  const bgLum: number[] = [];
  let ringCount = 0;
  let ringSum = 0;
  const diffs: number[] = [];
  for (let i = 0; i < n; i++) {
    if (near[i] === 1) {
      ringCount++;
      ringSum += lum[i]!;
    }
    if (near[i] !== 0) continue;
    bgCount++;
    bgSum += lum[i]!;
    bgLum.push(lum[i]!);
    const x = i % width;
    if (x + 1 < width && near[i + 1] === 0) diffs.push(Math.abs(lum[i + 1]! - lum[i]!));
    if (i + width < n && near[i + width] === 0) diffs.push(Math.abs(lum[i + width]! - lum[i]!));
  }
  const bgMean = bgCount ? bgSum / bgCount : 0;
  const bgMedian = bgCount ? median(bgLum) : 0;

  const found = pixels > 0;
  const hull = found ? hullArea(obj, width, height) : 0;
  const solidity = hull > 0 ? pixels / hull : null;
  const points = found ? countPoints(obj, width, height, sx / pixels, sy / pixels) : 0;
  return {
    width,
    height,
    found,
    pixels,
    area: pixels / n,
    centroid: found ? { x: sx / pixels / width, y: sy / pixels / height } : null,
    solidity,
    points,
    starLike: solidity !== null && solidity < STAR_SOLIDITY && points >= 4,
    backgroundStd: bgCount ? 1.4826 * median(bgLum.map((v) => Math.abs(v - bgMedian))) : 0,
    backgroundRoughness: diffs.length ? median(diffs) : 0,
    outlineContrast: ringCount && bgCount ? bgMean - ringSum / ringCount : 0,
  };
}

/** Reads a PNG (or any image sharp reads) and measures the object of `colour`. */
export async function measureShape(png: Buffer, colour: Colour): Promise<ShapeMeasure> {
  const { data, info } = await sharp(png).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected an RGB image, got ${info.channels} channels`);
  return measureRgb(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width, info.height, colour);
}

/** The prompt position whose region holds the centroid: left/right/top/bottom thirds, else center. */
export function positionOf(m: ShapeMeasure): Position | null {
  if (!m.centroid) return null;
  const { x, y } = m.centroid;
  const dx = x - 0.5;
  const dy = y - 0.5;
  if (Math.max(Math.abs(dx), Math.abs(dy)) < 1 / 6) return 'center';
  if (Math.abs(dx) >= Math.abs(dy)) return dx < 0 ? 'left' : 'right';
  return dy < 0 ? 'top' : 'bottom';
}
