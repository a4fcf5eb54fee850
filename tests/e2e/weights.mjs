// Page weights: every file a page loads (its HTML, then each /assets/ file
// it or its scripts reference), raw, gzip -9 and brotli quality 11, the
// forms tallyd embeds.
//
// usage: node tests/e2e/weights.mjs [DIR=net/www]   prints one table per page
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

export const PAGES = { start: 'index.html', participant: 'join.html', presenter: 'present.html', screen: 'screen.html' };
export const PARTICIPANT_BUDGET = 30 * 1024; // compressed bytes, whole page

const REF_RE = /(?:href|src)="\/assets\/([^"]+)"|from\s*'\/assets\/([^']+)'|import\s*'\/assets\/([^']+)'/g;

/** The files one page loads, its HTML first, each once. */
export function pageFiles(dir, html) {
  const seen = [html];
  for (let i = 0; i < seen.length; i++) {
    const text = fs.readFileSync(path.join(dir, seen[i]), 'utf8');
    for (const m of text.matchAll(REF_RE)) {
      const f = m[1] || m[2] || m[3];
      if (!seen.includes(f)) seen.push(f);
    }
  }
  return seen;
}

export function sizes(file) {
  const data = fs.readFileSync(file);
  return {
    raw: data.length,
    gzip: zlib.gzipSync(data, { level: 9 }).length,
    br: zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length } }).length,
  };
}

/** {files: [{name, raw, gzip, br}], total: {raw, gzip, br}} for one page. */
export function pageWeight(dir, html) {
  const files = pageFiles(dir, html).map((name) => ({ name, ...sizes(path.join(dir, name)) }));
  const total = { raw: 0, gzip: 0, br: 0 };
  for (const f of files) for (const k of Object.keys(total)) total[k] += f[k];
  return { files, total };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../net/www');
  for (const [page, html] of Object.entries(PAGES)) {
    const w = pageWeight(dir, html);
    console.log(`\n${page} page (${html})\n| file | raw | gzip -9 | brotli -q 11 |\n|---|---:|---:|---:|`);
    for (const f of w.files) console.log(`| ${f.name} | ${f.raw} | ${f.gzip} | ${f.br} |`);
    console.log(`| **total** | ${w.total.raw} | ${w.total.gzip} | ${w.total.br} |`);
  }
}
