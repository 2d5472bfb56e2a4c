import { readFileSync } from 'node:fs';

/** The README's error table (between its error-codes markers), as `code → status`. */
export function readmeErrorCodes(): Map<string, number> {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const table = readme.split('<!-- error-codes:start -->')[1]!.split('<!-- error-codes:end -->')[0]!;
  const rows = [...table.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)];
  return new Map(rows.map(([, code, status]) => [code!, Number(status)]));
}
