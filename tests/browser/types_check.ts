// Type-checked (never run) by tests/run-all.sh against crates/tidings/src/routes/tidings.d.ts:
// an application's use of the browser client, so the declarations are known to describe it.
import { connect, type Connection } from 'tidings';

const conn: Connection = connect('/rt?user=ann', {
  transports: ['websocket', 'sse', 'streaming', 'polling'],
  persist: true,
});
conn.addEventListener('open', () => conn.send('hello'));
conn.addEventListener('message', (e) => console.log(e.data.toUpperCase()));
conn.addEventListener('gap', (e) => console.log('missed', e.detail.missed ?? 'some'));
conn.addEventListener('close', (e) => console.log('closed', e.code, e.reason));
conn.close();
