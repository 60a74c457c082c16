#!/usr/bin/env node
// Builds both flavours of the package from src/: dist/esm (tsconfig.lib.json, NodeNext, ES modules) and
// dist/cjs (tsconfig.cjs.json, CommonJS), each with its own declarations. dist/cjs gets a package.json
// with "type": "commonjs", so Node and TypeScript read its .js and .d.ts files as CommonJS although this
// package is "type": "module". Run from anywhere; `npm run build` at the repo root calls it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(join(root, 'dist'), { recursive: true, force: true });
for (const project of ['tsconfig.lib.json', 'tsconfig.cjs.json']) {
  const { status, error } = spawnSync(process.execPath, [tsc, '-p', join(root, project)], { stdio: 'inherit' });
  if (error) throw error;
  if (status !== 0) {
    console.error(`build: tsc -p ${project} failed`);
    process.exit(status ?? 1);
  }
}
mkdirSync(join(root, 'dist/cjs'), { recursive: true });
writeFileSync(join(root, 'dist/cjs/package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
