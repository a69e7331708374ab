/**
 * A request's place in [0, 1) for a canary's split: stable, so the same request (a client's retry)
 * always falls on the same side. The key is the client's request id when there is one; otherwise the
 * image itself (its length and up to 64 evenly spaced 64-byte windows, so a large image costs the same
 * as a small one). FNV-1a, 32 bits, with murmur3's final mix so that keys differing only in their last
 * characters ("req-41", "req-42") still spread over the whole range: a spread, not a secret.
 */
const OFFSET = 0x811c9dc5;
const PRIME = 0x01000193;
const WINDOWS = 64;
const WINDOW_BYTES = 64;

function fnv(h: number, bytes: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, PRIME);
  return h;
}

export function requestBucket(key: string | undefined, image: Uint8Array): number {
  let h = OFFSET;
  if (key) {
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), PRIME);
  } else {
    const n = image.length;
    h = fnv(h, new Uint8Array(new Uint32Array([n]).buffer), 0, 4);
    if (n <= WINDOWS * WINDOW_BYTES) h = fnv(h, image, 0, n);
    else
      for (let w = 0; w < WINDOWS; w++) {
        const at = Math.floor((w * (n - WINDOW_BYTES)) / (WINDOWS - 1));
        h = fnv(h, image, at, at + WINDOW_BYTES);
      }
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}
