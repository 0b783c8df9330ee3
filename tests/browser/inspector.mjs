// Uses the web inspector in headless Chromium: enters the token, browses classes →
// objects → the counter the test wrote, edits its value, and checks the page shows it.
// Usage: node inspector.mjs http://127.0.0.1:ADMIN_PORT/ TOKEN OBJECT_NAME
import { launch } from './launch.mjs';

const [url, token, name] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  // Without the token the API refuses, and the page says so.
  await page.waitForSelector('#error:has-text("401")', { timeout: 10000 });
  await page.fill('#token', token);
  await page.dispatchEvent('#token', 'change');
  await page.click('a[data-class="counter"]', { timeout: 10000 });
  await page.click(`a[data-object="${name}"]`, { timeout: 10000 });
  const value = page.locator('input[data-edit="value"]');
  await value.waitFor({ timeout: 10000 });
  console.log('value shown: ' + await value.inputValue());
  console.log('sql: ' + await page.locator('#sql-none').innerText({ timeout: 10000 }));
  await value.fill('42');
  await page.click('button[data-save="value"]');
  await page.waitForSelector('body[data-edits="1"]', { timeout: 10000 });
  await page.waitForFunction(
    () => document.querySelector('input[data-edit="value"]')?.value === '42', null, { timeout: 10000 });
  console.log('value saved: 42');
  console.log('metrics: ' + await page.locator('#metrics').innerText());
} catch (e) {
  // What the page showed, to tell a wrong view from a slow one.
  const page = browser.contexts()[0]?.pages()[0];
  if (page) {
    console.log('page at failure:\n' + await page.locator('body').innerText());
    console.log('hash: ' + await page.evaluate(() => location.hash) +
      ', rendered: ' + await page.evaluate(() => document.body.dataset.ready) +
      ', error: ' + await page.locator('#error').innerText());
  }
  throw e;
} finally {
  await browser.close();
}
