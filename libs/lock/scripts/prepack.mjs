#!/usr/bin/env node
// `npm pack` / `npm publish` lifecycle. prepack: checks that both builds exist (`npm run build` makes
// them; `npm publish` runs it first through prepublishOnly), then copies the repository's LICENSE and
// CHANGELOG.md next to package.json so they ship in the tarball (`files` cannot name files outside the
// package folder). postpack (`clean`): removes the copies, so they never become stray files in the repo.
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const copies = ['LICENSE', 'CHANGELOG.md'];

if (process.argv[2] === 'clean') {
  for (const name of copies) rmSync(join(root, name), { force: true });
} else {
  const missing = ['dist/esm/index.js', 'dist/cjs/index.js', 'dist/cjs/package.json'].filter((f) => !existsSync(join(root, f)));
  if (missing.length) {
    console.error(`prepack: ${missing.join(', ')} missing: run \`npm run build\` first`);
    process.exit(1);
  }
  for (const name of copies) copyFileSync(join(root, '../..', name), join(root, name));
}
