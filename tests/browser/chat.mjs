// Opens the chat-room page twice in headless Chromium and checks that messages cross.
// Usage: node chat.mjs http://127.0.0.1:PORT/chat-room/ROOM/
import { chromium } from 'playwright-core';

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The flags this machine needs: no sandbox as root, and no background networking
  // (the network is closed).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  async function join(name) {
    const page = await browser.newPage();
    await page.goto(url);
    await page.fill('#name', name);
    await page.click('#join');
    await page.waitForSelector('body[data-connected="yes"]', { timeout: 10000 });
    return page;
  }
  const ada = await join('ada');
  const bob = await join('bob');
  await ada.fill('#text', 'hello from ada');
  await ada.click('#send');
  await bob.waitForSelector('text=ada: hello from ada', { timeout: 10000 });
  await bob.fill('#text', 'hi ada');
  await bob.click('#send');
  await ada.waitForSelector('text=bob: hi ada', { timeout: 10000 });
  console.log('messages crossed');
} finally {
  await browser.close();
}
