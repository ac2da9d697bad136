import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { hullArea, measureRgb, measureShape, positionOf } from '../../tools/demo-models/measure.js';
import { mulberry32 } from '../../tools/tiny-models/make-tiny-model.js';

// --- a tiny rasteriser for synthetic test images (4×4 supersampled coverage) -------------------------------------

type Rgb = readonly [number, number, number];
type Inside = (x: number, y: number) => boolean;

class Canvas {
  readonly rgb: Float64Array;
  constructor(
    readonly width: number,
    readonly height: number,
    fill: Rgb,
  ) {
    this.rgb = new Float64Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.rgb.set(fill, 3 * i);
  }

  /** Adds per-pixel noise and a low-frequency luminance pattern (the "photo" backgrounds). */
  texture(seed: number, amount: number): this {
    const rand = mulberry32(seed);
    for (let y = 0; y < this.height; y++) {
      for (let x = 0; x < this.width; x++) {
        const wave = 0.5 * amount * Math.sin(x * 0.45 + 1.3) * Math.cos(y * 0.31);
        const grain = amount * (rand() + rand() + rand() - 1.5);
        for (let c = 0; c < 3; c++) {
          const i = 3 * (y * this.width + x) + c;
          this.rgb[i] = this.rgb[i]! + wave + grain;
        }
      }
    }
    return this;
  }

  /** Paints `colour` over the pixels `inside` covers (coordinates in pixels), anti-aliased. */
  paint(inside: Inside, colour: Rgb): this {
    for (let y = 0; y < this.height; y++) {
      for (let x = 0; x < this.width; x++) {
        let hits = 0;
        for (let sy = 0; sy < 4; sy++) for (let sx = 0; sx < 4; sx++) if (inside(x + (sx + 0.5) / 4, y + (sy + 0.5) / 4)) hits++;
        const a = hits / 16;
        if (a === 0) continue;
        for (let c = 0; c < 3; c++) {
          const i = 3 * (y * this.width + x) + c;
          this.rgb[i] = this.rgb[i]! * (1 - a) + colour[c]! * a;
        }
      }
    }
    return this;
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.rgb, (v) => Math.round(Math.min(1, Math.max(0, v)) * 255));
  }

  png(): Promise<Buffer> {
    return sharp(Buffer.from(this.bytes()), { raw: { width: this.width, height: this.height, channels: 3 } }).png().toBuffer();
  }
}

function polygon(points: readonly (readonly [number, number])[]): Inside {
  return (x, y) => {
    let inside = false;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = points[i]!;
      const [xj, yj] = points[j]!;
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  };
}

/** A regular polygon (or star with inner radius ratio `inner`), first vertex pointing up. */
function regular(cx: number, cy: number, r: number, corners: number, inner?: number): Inside {
  const k = inner === undefined ? corners : 2 * corners;
  const pts = Array.from({ length: k }, (_, i) => {
    const a = -Math.PI / 2 + (i * 2 * Math.PI) / k;
    const rr = inner !== undefined && i % 2 === 1 ? r * inner : r;
    return [cx + rr * Math.cos(a), cy + rr * Math.sin(a)] as const;
  });
  return polygon(pts);
}

const disc = (cx: number, cy: number, r: number): Inside => (x, y) => Math.hypot(x - cx, y - cy) <= r;
const ring = (cx: number, cy: number, r: number, width: number): Inside => (x, y) => Math.abs(Math.hypot(x - cx, y - cy) - r) <= width / 2;
const star = (cx: number, cy: number, r: number): Inside => regular(cx, cy, r, 5, 0.47);

const RED: Rgb = [0.86, 0.12, 0.12];
const BLUE: Rgb = [0.16, 0.32, 0.9];
const DARK: Rgb = [0.08, 0.08, 0.08];
const PAPER: Rgb = [0.93, 0.92, 0.9];
const STONE: Rgb = [0.5, 0.48, 0.47];

/** "Photo" style: a (slightly shaded) red star on a textured, noisy background. */
function photoStar(size: number, cx: number, cy: number, r: number): Canvas {
  return new Canvas(size, size, STONE)
    .texture(7, 0.08)
    .paint(star(cx, cy, r), RED)
    .paint((x, y) => star(cx, cy, r)(x, y) && y > cy + r * 0.2, [0.7, 0.1, 0.1]);
}

/** "Cartoon" style: a flat red circle with a dark outline on a plain light background. */
function cartoonCircle(size: number, cx: number, cy: number, r: number): Canvas {
  return new Canvas(size, size, PAPER).paint(disc(cx, cy, r), RED).paint(ring(cx, cy, r, size / 24), DARK);
}

describe('measureShape', () => {
  it('finds a red star on the left of a textured background', async () => {
    const m = await measureShape(await photoStar(64, 18, 32, 13).png(), 'red');
    assert.ok(m.found);
    assert.equal(m.width, 64);
    assert.ok(m.centroid && m.centroid.x > 0.22 && m.centroid.x < 0.34, `x ${m.centroid?.x}`);
    assert.ok(Math.abs(m.centroid!.y - 0.5) < 0.06, `y ${m.centroid?.y}`);
    assert.equal(positionOf(m), 'left');
    assert.ok(m.solidity! < 0.72, `solidity ${m.solidity}`);
    assert.equal(m.points, 5);
    assert.ok(m.starLike);
    assert.ok(m.backgroundRoughness > 0.02, `roughness ${m.backgroundRoughness}`);
    assert.ok(m.backgroundStd > 0.03, `std ${m.backgroundStd}`);
  });

  it('finds a red circle in the center of a flat outlined cartoon', async () => {
    const m = await measureShape(await cartoonCircle(64, 32, 32, 20).png(), 'red');
    assert.ok(m.found);
    assert.ok(Math.abs(m.centroid!.x - 0.5) < 0.02 && Math.abs(m.centroid!.y - 0.5) < 0.02);
    assert.equal(positionOf(m), 'center');
    assert.ok(m.solidity! > 0.9, `solidity ${m.solidity}`);
    assert.ok(m.points <= 1, `points ${m.points}`);
    assert.ok(!m.starLike);
    assert.ok(m.area > 0.25 && m.area < 0.35, `area ${m.area}`);
    assert.equal(m.backgroundRoughness, 0);
    assert.ok(m.backgroundStd < 0.005, `std ${m.backgroundStd}`);
    assert.ok(m.outlineContrast > 0.4, `outline ${m.outlineContrast}`);
  });

  it('tells the styles apart by background roughness and outline', async () => {
    const photo = await measureShape(await photoStar(32, 16, 16, 10).png(), 'red');
    const cartoon = await measureShape(await cartoonCircle(32, 16, 16, 10).png(), 'red');
    assert.ok(photo.backgroundRoughness > 10 * Math.max(cartoon.backgroundRoughness, 0.001));
    assert.ok(cartoon.outlineContrast > photo.outlineContrast + 0.3);
  });

  it('calls stars stars and other shapes not, at the 32×32 demo size', () => {
    const shapes: [string, Inside, boolean][] = [
      ['large star', star(16, 16, 11), true],
      ['small star', star(9, 16, 7), true],
      ['circle', disc(16, 16, 9), false],
      ['small circle', disc(9, 16, 5), false],
      ['square', regular(16, 16, 11, 4), false],
      ['axis-aligned square', polygon([[7, 7], [25, 7], [25, 25], [7, 25]]), false],
      ['triangle', regular(16, 17, 12, 3), false],
    ];
    for (const [name, inside, isStar] of shapes) {
      const m = measureRgb(new Canvas(32, 32, STONE).texture(3, 0.05).paint(inside, RED).bytes(), 32, 32, 'red');
      assert.equal(m.starLike, isStar, `${name}: solidity ${m.solidity}, points ${m.points}`);
    }
  });

  it('counts the corners of polygons', () => {
    const count = (inside: Inside): number => measureRgb(new Canvas(64, 64, PAPER).paint(inside, BLUE).bytes(), 64, 64, 'blue').points;
    assert.equal(count(regular(32, 34, 26, 3)), 3);
    assert.equal(count(regular(32, 32, 26, 4)), 4);
    assert.equal(count(star(32, 32, 26)), 5);
    assert.equal(count(disc(32, 32, 22)), 0);
  });

  it('measures only the prompt colour, and its largest region', () => {
    const img = new Canvas(48, 48, PAPER)
      .paint(disc(36, 36, 8), BLUE)
      .paint(star(14, 14, 11), RED)
      .paint(disc(40, 8, 1.5), RED) // a speck: not the object
      .bytes();
    const red = measureRgb(img, 48, 48, 'red');
    const blue = measureRgb(img, 48, 48, 'blue');
    assert.ok(red.starLike && red.centroid!.x < 0.4 && red.centroid!.y < 0.4);
    assert.ok(!blue.starLike && blue.centroid!.x > 0.65 && blue.centroid!.y > 0.65);
    const green = measureRgb(img, 48, 48, 'green');
    assert.equal(green.found, false);
    assert.equal(green.centroid, null);
    assert.equal(green.solidity, null);
    assert.equal(positionOf(green), null);
  });

  it('fills holes such as highlights inside the object', () => {
    const img = new Canvas(32, 32, PAPER).paint(disc(16, 16, 10), RED).paint(disc(13, 13, 2.5), [1, 1, 1]).bytes();
    const m = measureRgb(img, 32, 32, 'red');
    assert.ok(m.solidity! > 0.9, `solidity ${m.solidity}`);
  });

  it('takes the hull over pixel squares', () => {
    const mask = new Uint8Array(16);
    mask[5] = 1; // one pixel of a 4×4 image
    assert.equal(hullArea(mask, 4, 4), 1);
    mask.fill(1);
    assert.equal(hullArea(mask, 4, 4), 16);
  });

  it('reads RGBA and greyscale PNGs', async () => {
    const rgba = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 220, g: 30, b: 30, alpha: 1 } } }).png().toBuffer();
    const m = await measureShape(rgba, 'red');
    assert.equal(m.pixels, 64);
    const grey = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 128, g: 128, b: 128 } } }).greyscale().png().toBuffer();
    assert.equal((await measureShape(grey, 'red')).found, false);
  });
});
