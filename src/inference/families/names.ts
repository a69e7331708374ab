/**
 * Class names: Ultralytics writes them into ONNX metadata as a Python dict literal
 * (`{0: 'person', 1: 'bicycle'}`); operators can also give a labels file, one name per line.
 */

/** Python string escapes that Ultralytics names can plausibly contain. */
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  n: '\n',
  t: '\t',
  r: '\r',
  '0': '\0',
};

/** A tiny recursive-descent reader for the subset of Python literals used by `names`. */
class LiteralReader {
  pos = 0;
  constructor(readonly s: string) {}

  ws(): void {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos])) this.pos++;
  }

  eat(ch: string): boolean {
    this.ws();
    if (this.s[this.pos] !== ch) return false;
    this.pos++;
    return true;
  }

  peek(): string | undefined {
    this.ws();
    return this.s[this.pos];
  }

  /** A quoted string ('...' or "..."); null when malformed. */
  str(): string | null {
    this.ws();
    const q = this.s[this.pos];
    if (q !== "'" && q !== '"') return null;
    this.pos++;
    let out = '';
    while (this.pos < this.s.length) {
      const ch = this.s[this.pos++];
      if (ch === q) return out;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const e = this.s[this.pos++];
      if (e === undefined) return null;
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        out += simple;
      } else if (e === 'x' || e === 'u' || e === 'U') {
        const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        const hex = this.s.slice(this.pos, this.pos + n);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) return null;
        out += String.fromCodePoint(parseInt(hex, 16));
        this.pos += n;
      } else {
        out += '\\' + e; // Python keeps unknown escapes verbatim
      }
    }
    return null;
  }

  /** A non-negative integer key, bare (`0`) or quoted (`'0'`, JSON style). */
  key(): number | null {
    this.ws();
    const q = this.s[this.pos];
    if (q === "'" || q === '"') {
      const k = this.str();
      return k !== null && /^\d+$/.test(k) ? Number(k) : null;
    }
    const m = /^\d+/.exec(this.s.slice(this.pos, this.pos + 12));
    if (!m) return null;
    this.pos += m[0].length;
    return Number(m[0]);
  }

  atEnd(): boolean {
    this.ws();
    return this.pos >= this.s.length;
  }
}

function parseDict(r: LiteralReader): string[] | null {
  const byId = new Map<number, string>();
  while (!r.eat('}')) {
    const k = r.key();
    if (k === null || !r.eat(':')) return null;
    const v = r.str();
    if (v === null || byId.has(k)) return null;
    byId.set(k, v);
    if (!r.eat(',') && r.peek() !== '}') return null;
  }
  // ids must be exactly 0..n-1: a gap would silently shift every later label
  const out: string[] = new Array<string>(byId.size);
  for (let i = 0; i < byId.size; i++) {
    const v = byId.get(i);
    if (v === undefined) return null;
    out[i] = v;
  }
  return out;
}

function parseList(r: LiteralReader): string[] | null {
  const out: string[] = [];
  while (!r.eat(']')) {
    const v = r.str();
    if (v === null) return null;
    out.push(v);
    if (!r.eat(',') && r.peek() !== ']') return null;
  }
  return out;
}

/**
 * Parses the `names` metadata value: a dict `{0: 'a', 1: "b"}` (keys 0..n-1 in any order) or a list
 * `['a', 'b']`. Returns null when the text is not such a literal.
 */
export function parseUltralyticsNames(s: string): string[] | null {
  const r = new LiteralReader(s);
  let out: string[] | null;
  if (r.eat('{')) out = parseDict(r);
  else if (r.eat('[')) out = parseList(r);
  else return null;
  return out !== null && r.atEnd() ? out : null;
}

/** One name per line, trimmed; trailing blank lines (a final newline) are ignored. */
export function parseLabelsFile(text: string): string[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  let n = lines.length;
  while (n > 0 && lines[n - 1] === '') n--;
  return lines.slice(0, n);
}

/** The label for a class id, or `class_<id>` when the id has no (non-empty) name. */
export function labelFor(names: readonly string[], id: number): string {
  const name = names[id];
  return name ? name : `class_${id}`;
}
