// Generates TypeScript declarations of the `dohost:object/*` modules componentize-js provides, from wit/dohost.wit, with the pinned jco.
//
// `npx jco guest-types` fails with "failed to read path for WIT ... (os error 44)" whatever
// the path: jco 1.35.0 runs its WIT parser as a component on @bytecodealliance/preview2-shim
// 0.26.1, whose filesystem starts with no preopened directories (0.25 preopened `/`), and
// jco's `types`/`guest-types` never add one, so the parser sees no files at all (44 is
// WASI's ENOENT). This script preopens `/` in the shim jco-transpile loads, then calls the
// same generator. Usage: node sdk-js/gen-types.mjs [OUT_DIR] (default sdk-js/wit-types).
import { createRequire } from 'node:module';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
// The JS guests' pinned toolchain (guests/counter-js/package-lock.json) holds jco.
const toolchain = createRequire(join(repo, 'guests/counter-js/package.json'));
const transpileEntry = toolchain.resolve('@bytecodealliance/jco-transpile');
// Resolved from jco-transpile itself, so it is the very module instance its parser uses.
const shimPath = createRequire(transpileEntry).resolve('@bytecodealliance/preview2-shim/filesystem');
const { _setPreopens } = await import(pathToFileURL(shimPath));
_setPreopens({ '/': '/' });
const { generateGuestTypes } = await import(pathToFileURL(transpileEntry));

const outDir = resolve(process.argv[2] ?? join(here, 'wit-types'));
const files = await generateGuestTypes(join(repo, 'wit'), {
  worldName: 'object',
  outDir: outDir + '/',
});
for (const [path, contents] of Object.entries(files)) {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, contents);
  console.log(path);
}
