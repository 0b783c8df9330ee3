// Uses the web inspector in headless Chromium to look at an object's SQL tables: browses
// classes → objects → the object, waits for the table named TABLE and prints what the page
// shows of it (headers and rows, as text) as one JSON line, with whether any markup from
// the data became elements.
// Usage: node inspector-sql.mjs http://127.0.0.1:ADMIN_PORT/ BINDING OBJECT_NAME TABLE
import { launch } from './launch.mjs';

const [url, binding, name, table] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.click(`a[data-class="${binding}"]`, { timeout: 10000 });
  await page.click(`a[data-object="${name}"]`, { timeout: 10000 });
  // Found by its attribute's value, not a selector: the name may hold any character.
  await page.waitForFunction(t => [...document.querySelectorAll('table[data-sql-table]')]
    .some(e => e.dataset.sqlTable === t), table, { timeout: 10000 });
  const shown = await page.evaluate(t => {
    const found = [...document.querySelectorAll('table[data-sql-table]')]
      .find(e => e.dataset.sqlTable === t);
    const rows = [...found.querySelectorAll('tr')];
    return {
      tables: [...document.querySelectorAll('table[data-sql-table]')].map(e => e.dataset.sqlTable),
      headers: [...rows[0].querySelectorAll('th')].map(c => c.textContent),
      rows: rows.slice(1).map(r => [...r.querySelectorAll('td')].map(c => c.textContent)),
      markup: document.querySelectorAll('#view img, #view b, #view i').length,
      pwned: document.body.dataset.pwned || null,
    };
  }, table);
  console.log('sql shown: ' + JSON.stringify(shown));
} catch (e) {
  const page = browser.contexts()[0]?.pages()[0];
  if (page) {
    console.log('page at failure:\n' + await page.locator('body').innerText());
    console.log('error: ' + await page.locator('#error').innerText());
  }
  throw e;
} finally {
  await browser.close();
}
