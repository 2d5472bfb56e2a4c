/**
 * Writes the order machine's diagram, generated from the machine itself:
 *   npm run diagram               writes docs/order-machine.mmd, docs/order-machine.json and README.md's diagram block
 *   npm run diagram -- --check    exits 1 if the committed files differ from what it would write
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DIAGRAM_PATHS, diagramFiles, embedInReadme } from '../src/machines/order.diagram.js';
import { orderMachine } from '../src/machines/order.machine.js';

function fail(message: string, code: number): never {
  process.stderr.write(`diagram: ${message}\n`);
  process.exit(code);
}

let check: boolean;
try {
  check = parseArgs({ options: { check: { type: 'boolean', default: false } }, strict: true }).values.check ?? false;
} catch (err) {
  fail(`${(err as Error).message}\nusage: npm run diagram [-- --check]`, 2);
}

const root = fileURLToPath(new URL('..', import.meta.url));

function readCommitted(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').replace(/\r\n/g, '\n');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const files = diagramFiles(orderMachine);
files['README.md'] = embedInReadme(readCommitted(join(root, 'README.md')) ?? '', files[DIAGRAM_PATHS.mermaid]!);

const stale: string[] = [];
for (const [path, content] of Object.entries(files)) {
  const file = join(root, path);
  const committed = readCommitted(file);
  if (committed === content) {
    process.stdout.write(`${path}: up to date\n`);
    continue;
  }
  if (check) {
    stale.push(`${path} is ${committed === null ? 'missing' : 'out of date'}`);
    continue;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
  process.stdout.write(`${path}: written\n`);
}

if (stale.length > 0) {
  fail(
    `${stale.join('; ')}.\nThe diagram no longer matches src/machines/order.machine.ts: run \`npm run diagram\` and commit the result.`,
    1,
  );
}
