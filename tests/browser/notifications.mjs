// Opens the notifications page twice in headless Chromium: both subscribe with EventSource,
// one publishes, and both see the event arrive, with its ID.
// Usage: node notifications.mjs http://127.0.0.1:PORT/notifications/NAME/
import { launch } from './launch.mjs';

const url = process.argv[2];
const browser = await launch();
try {
  async function subscribe() {
    const page = await browser.newPage();
    await page.goto(url);
    await page.fill('#topic', 'news');
    await page.click('#subscribe');
    await page.waitForSelector('body[data-connected="yes"]', { timeout: 10000 });
    return page;
  }
  const ada = await subscribe();
  const bob = await subscribe();
  await ada.fill('#text', 'first news');
  await ada.click('#publish');
  await bob.waitForSelector('div.event[data-id="1"]:has-text("first news")', { timeout: 10000 });
  await ada.waitForSelector('div.event[data-id="1"]:has-text("first news")', { timeout: 10000 });
  await bob.fill('#text', 'second news');
  await bob.click('#publish');
  await ada.waitForSelector('div.event[data-id="2"]:has-text("second news")', { timeout: 10000 });
  console.log('events arrived');
} finally {
  await browser.close();
}
