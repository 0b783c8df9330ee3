// Opens the chat-room page twice in headless Chromium and checks that messages cross.
// Usage: node chat.mjs http://127.0.0.1:PORT/chat-room/ROOM/
import { launch } from './launch.mjs';

const url = process.argv[2];
const browser = await launch();
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
