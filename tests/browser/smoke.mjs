// Proves the browser toolchain works before any Tidings test depends on it, so a broken
// Chromium or playwright-core install fails here with a clear message instead of as a timeout.

import { launchBrowser } from './launch.mjs';

const { context, close } = await launchBrowser();
try {
  const page = await context.newPage();
  await page.goto('data:text/html,<h1>hi</h1>');
  const text = await page.textContent('h1');
  if (text !== 'hi') {
    throw new Error(`expected <h1> to read "hi", got ${JSON.stringify(text)}`);
  }
  console.log('browser smoke ok');
} finally {
  await close();
}
