// A small Express service that meters its work with the Tally client and enforces limits with usageLimit — what
// docs/clients.md shows. In your service the imports are "@tally/client" and "@tally/client/middleware".
//   TALLY_URL=http://127.0.0.1:3000 TALLY_KEY=... PORT=8080 npx tsx clients/examples/express-service.ts
//   curl -H 'x-customer: acme' localhost:8080/work   → {"id":"0192…"} (the event's id, for a receipt)
import express from "express";
import { DeliveryError, TallyClient } from "../typescript/src/index.js";
import { usageLimit } from "../typescript/src/middleware.js";

const url = process.env.TALLY_URL ?? "http://127.0.0.1:3000";
const apiKey = process.env.TALLY_KEY ?? "";
const tally = new TallyClient({
  url,
  apiKey,
  onRetry: (r) => console.error(`tally: retry in ${r.delayMs} ms: ${r.reason}`),
});

const app = express();
app.use(usageLimit({ url, apiKey, customer: (req) => req.header("x-customer"), meter: "api_calls" }));
app.get("/work", async (req, res) => {
  const id = await tally.track({ customer: req.header("x-customer") ?? "anonymous", meter: "api_calls" });
  res.json({ id });
});

const server = app.listen(Number(process.env.PORT ?? 8080), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${(server.address() as { port: number }).port}`);
});

process.on("SIGTERM", async () => {
  server.close();
  try {
    await tally.close(); // everything buffered reaches Tally, or the error says what did not
    console.log(`closed: ${JSON.stringify(tally.metrics())}`);
  } catch (err) {
    if (err instanceof DeliveryError) console.error(`${err.undelivered.length} events not delivered: ${err.message}`);
    process.exitCode = 1;
  }
});
