// Launches the system Chromium for Tidings browser tests.
//
// We drive a distro Chromium through playwright-core instead of `playwright install` so the
// tests need nothing beyond apt and npm: no browser downloads, no pinned browser builds.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** Flags shared by every browser test; documented in README.md. */
export const CHROMIUM_ARGS = [
  '--headless',
  // Containers and CI usually run as root, where the setuid sandbox refuses to start.
  '--no-sandbox',
  '--disable-gpu',
  // Keep transports on plain TCP so what a test sees is what the server under test sent.
  '--disable-quic',
  // The rest stop Chromium from making its own network requests during a test.
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts Chromium with a fresh profile.
 *
 * Playwright's `launch()` rejects `--user-data-dir` in `args`, so a persistent context over a
 * throwaway directory is how we guarantee no state (cookies, cache, service workers) leaks
 * between runs.
 *
 * @returns {Promise<{ context: import('playwright-core').BrowserContext, close: () => Promise<void> }>}
 */
export async function launchBrowser() {
  const userDataDir = await mkdtemp(join(tmpdir(), 'tidings-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.TIDINGS_CHROMIUM || '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      headless: true,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  const close = async () => {
    try {
      await context.close();
    } finally {
      await rm(userDataDir, { recursive: true, force: true });
    }
  };
  return { context, close };
}
