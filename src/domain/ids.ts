import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32

let lastTime = -1;
let lastRandom: number[] = [];

/**
 * A ULID with a prefix, e.g. `ord_01JD…`: 48-bit time then 80 random bits, monotonic
 * within a millisecond, so ids sort by creation time and serve as list cursors.
 */
export function newId(prefix: string): string {
  let time = Date.now();
  if (time <= lastTime) {
    time = lastTime;
    increment(lastRandom);
  } else {
    lastTime = time;
    lastRandom = randomDigits();
  }
  let timePart = '';
  for (let i = 0, t = time; i < 10; i++, t = Math.floor(t / 32)) timePart = ALPHABET[t % 32] + timePart;
  return `${prefix}_${timePart}${lastRandom.map((d) => ALPHABET[d]).join('')}`;
}

// Random bytes are drawn 4 KiB at a time: one system call per 256 ids, not one per id.
const entropy = new Uint8Array(4096);
let used = entropy.length;

/** 16 base-32 digits (80 bits) of fresh randomness. */
function randomDigits(): number[] {
  if (used + 16 > entropy.length) {
    randomFillSync(entropy);
    used = 0;
  }
  const digits = new Array<number>(16);
  for (let i = 0; i < 16; i++) digits[i] = entropy[used + i]! & 31;
  used += 16;
  return digits;
}

function increment(digits: number[]): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    if (digits[i]! < 31) {
      digits[i]!++;
      return;
    }
    digits[i] = 0;
  }
}

export const ORDER_ID_PATTERN = /^ord_[0-9A-HJKMNP-TV-Z]{26}$/;
