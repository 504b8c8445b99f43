// Drives the real sockjs-client in Chromium against a Tidings server.
// Usage: node sockjs_echo.mjs <base url of the server> <transport>
// Prints one JSON line: what the page saw, in order. Exits 1 on a launch error.
import { createRequire } from 'node:module';
import { launchBrowser } from './launch.mjs';

const [base, transport] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const sockjsPath = require.resolve('sockjs-client/dist/sockjs.min.js');

const { context, close } = await launchBrowser();
try {
  const page = await context.newPage();
  await page.goto(`${base}/echo`);
  await page.addScriptTag({ path: sockjsPath });
  const seen = await page.evaluate(({ base, transport }) => new Promise((resolve) => {
    const seen = [];
    const options = { transports: [transport] };
    const echo = new SockJS(`${base}/echo`, null, options);
    const messages = ['plain', 'non-BMP \u{1F600} and \u2028', 'x'.repeat(100 * 1024)];
    echo.onopen = () => { seen.push(`open:${echo.transport}`); messages.forEach((m) => echo.send(m)); };
    echo.onmessage = (e) => {
      seen.push(`echo:${e.data === messages[seen.length - 1] ? 'same' : 'different'}`);
      if (seen.length === 1 + messages.length) {
        echo.close();
        const closing = new SockJS(`${base}/close`, null, options);
        closing.onclose = (c) => { seen.push(`close:${c.code}:${c.reason}`); resolve(seen); };
      }
    };
    echo.onclose = (c) => { if (seen.length < 1 + messages.length) { seen.push(`closed early:${c.code}:${c.reason}`); resolve(seen); } };
    setTimeout(() => resolve(seen.concat('timeout')), 15000);
  }), { base, transport });
  console.log(JSON.stringify(seen));
} finally {
  await close();
}
