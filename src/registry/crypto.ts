/**
 * Model encryption at rest: AES-256-GCM, one random IV per blob. An encrypted blob file is
 *
 *   "SLENC1" (6 bytes) | key id (8 bytes) | IV (12 bytes) | ciphertext (same length as the plain model) | GCM tag (16 bytes)
 *
 * The 26-byte header is the GCM additional data, so a header edited to name another key or IV fails
 * authentication. The key id (first 8 bytes of a domain-separated sha256 of the key, shown as 16 hex
 * digits) tells which key a file needs without trying keys, which is what makes a wrong key a clear
 * error and a key rotation resumable. The blob's name stays the sha256 of the plain model.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  randomBytes,
  type CipherGCM,
  type DecipherGCM,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SightlineError } from '../errors.js';

export const ENC_MAGIC = Buffer.from('SLENC1', 'latin1');
const KEY_ID_BYTES = 8;
const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const HEADER_BYTES = ENC_MAGIC.length + KEY_ID_BYTES + IV_BYTES;
/** Encrypted file size minus plain size. */
export const ENCRYPTION_OVERHEAD = HEADER_BYTES + TAG_BYTES;
const KEY_BYTES = 32;

/** A 256-bit key with its public id. */
export interface BlobKey {
  /** 16 hex digits; safe to log and to show in errors. */
  readonly id: string;
  readonly key: Buffer;
}

export interface KeySource {
  /** File holding the key (hex or base64; surrounding whitespace ignored), e.g. a mounted Kubernetes Secret. */
  readonly keyFile?: string;
  /** Name of the environment variable holding the key. */
  readonly keyEnv?: string;
}

/** The id of a key: a hash, so the file header names the key without revealing anything about it. */
export function keyId(key: Buffer): string {
  return createHash('sha256')
    .update('sightline blob key id\0')
    .update(key)
    .digest()
    .subarray(0, KEY_ID_BYTES)
    .toString('hex');
}

export function blobKey(key: Buffer): BlobKey {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new SightlineError(
      'INVALID_INPUT',
      `an encryption key must be ${KEY_BYTES} bytes, got ${Buffer.isBuffer(key) ? key.length : typeof key}`,
    );
  }
  return { id: keyId(key), key: Buffer.from(key) };
}

/**
 * The configured key, or null when encryption is off (neither source set). Throws INVALID_INPUT, never
 * quoting the key material, for both sources set, an unreadable file, an unset variable or a value that
 * is not 32 bytes of hex or base64: a configured but unusable key must stop start-up, not silently
 * store models in the clear.
 */
export function loadKey(src: KeySource, env: NodeJS.ProcessEnv = process.env): Buffer | null {
  if (src.keyFile !== undefined && src.keyEnv !== undefined) {
    throw new SightlineError('INVALID_INPUT', 'encryption: set keyFile or keyEnv, not both');
  }
  if (src.keyFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(src.keyFile, 'utf8');
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new SightlineError(
        'INVALID_INPUT',
        `encryption key file ${src.keyFile} cannot be read${typeof code === 'string' ? ` (${code})` : ''}`,
        { keyFile: src.keyFile },
        { cause: e },
      );
    }
    return parseKey(text, `encryption key file ${src.keyFile}`);
  }
  if (src.keyEnv !== undefined) {
    const text = env[src.keyEnv];
    if (text === undefined || text.trim() === '') {
      throw new SightlineError(
        'INVALID_INPUT',
        `encryption key environment variable ${src.keyEnv} is not set or empty`,
        { keyEnv: src.keyEnv },
      );
    }
    return parseKey(text, `encryption key environment variable ${src.keyEnv}`);
  }
  return null;
}

/** 32 bytes from 64 hex digits or base64 (standard or URL-safe, padding optional). `what` names the source in errors. */
export function parseKey(text: string, what = 'encryption key'): Buffer {
  const s = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex');
  // All hex digits but not 64 of them: a hex key of the wrong length (base64 of 32 bytes is 43-44 characters).
  if (/^[0-9a-fA-F]+$/.test(s) && s.length !== 43 && s.length !== 44) {
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} is ${s.length} hex digits; AES-256 needs 64 (32 bytes, e.g. \`openssl rand -hex 32\`)`,
    );
  }
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    // Buffer.from(…, 'base64') skips characters it does not know; the pattern above rules those out.
    const b = Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) return b;
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} decodes to ${b.length} bytes; AES-256 needs exactly ${KEY_BYTES} (e.g. \`openssl rand -hex 32\`)`,
    );
  }
  throw new SightlineError(
    'INVALID_INPUT',
    `${what} is not 64 hex digits or base64 of ${KEY_BYTES} bytes (e.g. \`openssl rand -hex 32\`)`,
  );
}

/** A fresh random key (for `sightline key generate` and tests). */
export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** Whether a file starting with `head` is an encrypted blob. */
export function isEncryptedHead(head: Uint8Array): boolean {
  return head.length >= ENC_MAGIC.length && ENC_MAGIC.equals(head.subarray(0, ENC_MAGIC.length));
}

export interface EncHeader {
  readonly keyId: string;
  readonly iv: Buffer;
  /** The raw header bytes (the GCM additional data). */
  readonly raw: Buffer;
}

/** Parses a header; null if `buf` does not start with one. */
export function parseHeader(buf: Uint8Array): EncHeader | null {
  if (buf.length < HEADER_BYTES || !isEncryptedHead(buf)) return null;
  const raw = Buffer.from(buf.subarray(0, HEADER_BYTES));
  return {
    keyId: raw.subarray(ENC_MAGIC.length, ENC_MAGIC.length + KEY_ID_BYTES).toString('hex'),
    iv: raw.subarray(ENC_MAGIC.length + KEY_ID_BYTES, HEADER_BYTES),
    raw,
  };
}

/** Streaming encryption of one blob: write `header`, then each `update()`, then `final()` (the tag). */
export class BlobEncryptor {
  readonly header: Buffer;
  private readonly cipher: CipherGCM;

  constructor(k: BlobKey) {
    const iv = randomBytes(IV_BYTES);
    this.header = Buffer.concat([ENC_MAGIC, Buffer.from(k.id, 'hex'), iv]);
    this.cipher = createCipheriv('aes-256-gcm', k.key, iv);
    this.cipher.setAAD(this.header);
  }

  update(plain: Uint8Array): Buffer {
    return this.cipher.update(plain);
  }

  /** The GCM tag; anything left in the cipher (nothing, for GCM) comes first. */
  final(): Buffer {
    return Buffer.concat([this.cipher.final(), this.cipher.getAuthTag()]);
  }
}

/** A decipher for a blob with this header and tag; its final() throws unless the whole file is authentic. */
export function blobDecipher(k: BlobKey, header: EncHeader, tag: Buffer): DecipherGCM {
  const d = createDecipheriv('aes-256-gcm', k.key, header.iv);
  d.setAAD(header.raw);
  d.setAuthTag(tag);
  return d;
}

/** The PRECONDITION error for a blob that needs a key this process does not have. */
export function keyMismatch(sha256: string, fileKeyId: string, configured: readonly BlobKey[]): SightlineError {
  const have = configured.length === 0 ? 'none' : configured.map((k) => k.id).join(', ');
  return new SightlineError(
    'PRECONDITION',
    `model blobs are encrypted with key ${fileKeyId}; the configured key is ${have}`,
    { sha256, keyId: fileKeyId, configuredKeyIds: configured.map((k) => k.id) },
  );
}
