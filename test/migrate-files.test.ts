// Released migration files never change: a database that applied one is refused at start if its checksum moves.
// Shared DDL was moved into sql/include/ (one definition); the expanded text, and so the checksum, stayed the same.
import { describe, expect, it } from "vitest";
import { loadMigrations } from "../src/db/migrate.js";

describe("migration files", () => {
  it("when the released files are loaded, then each has the checksum it was released with", async () => {
    const released: [string, string, string][] = [
      ["postgres", "0001_core.sql", "9c83eaf675b758b68982c8a5764bfa72c646b263a6dd6523a27099e1adb5366a"],
      ["postgres", "0002_events.postgres.sql", "52b6f337e1c774938514b4080439caa4a95f8d42d4e308d2dc1f7955cb73f8ae"],
      ["postgres", "0003_rollup_tracking.sql", "af23b82c2a81a0f45b8eb112734ac040a1b741ac85c7e1ef267794ee1c248c04"],
      ["postgres", "0004_rollups.postgres.sql", "a2de9b369eafb2d5f643be9fb1c94c81443ecc93b4ab82837ce5c1526fecf41a"],
      ["postgres", "0005_job_runs.sql", "eebf5d8437dc7052e083490f31906e9e6ce77c62a2e2e70475dc2222376b54ae"],
      ["postgres", "0007_pricing.sql", "732b0576955a697eb980831ff5fcbf03c3daf5fd0be7e6792b9df4f3bec11de4"],
      ["postgres", "0008_stripe.sql", "364edb5091cee53e8001787b9da4d119af9756ab7516095fc845571f76272b54"],
      ["postgres", "0009_limits.sql", "21737d559ce231b7de0c28e48abff63655a30ea7678bb228ec99684b357c618e"],
      ["postgres", "0010_job_ticks.sql", "9035fce7d6a87c8e79e0909bd2c01d051e904e7f5ac9e7678e28452e3a7cb5b3"],
      ["timescale", "0001_core.sql", "9c83eaf675b758b68982c8a5764bfa72c646b263a6dd6523a27099e1adb5366a"],
      ["timescale", "0002_events.timescale.sql", "67b676855520e9359fe5137eeef5b196bb85d921f141db5bfa9f0ca7b9c4c0d2"],
      ["timescale", "0003_rollup_tracking.sql", "af23b82c2a81a0f45b8eb112734ac040a1b741ac85c7e1ef267794ee1c248c04"],
      ["timescale", "0004_rollups.timescale.sql", "01fadc769232f8f195cb26244cf10199e423439858b8f5aa7f7431b1a63e84ef"],
      ["timescale", "0005_job_runs.sql", "eebf5d8437dc7052e083490f31906e9e6ce77c62a2e2e70475dc2222376b54ae"],
      [
        "timescale",
        "0006_rollup_reads.timescale.sql",
        "18fcdc325f02eb7a739b500840e9f3445ad9f9d860715821f6179313bf0d58e2",
      ],
      ["timescale", "0007_pricing.sql", "732b0576955a697eb980831ff5fcbf03c3daf5fd0be7e6792b9df4f3bec11de4"],
      ["timescale", "0008_stripe.sql", "364edb5091cee53e8001787b9da4d119af9756ab7516095fc845571f76272b54"],
      ["timescale", "0009_limits.sql", "21737d559ce231b7de0c28e48abff63655a30ea7678bb228ec99684b357c618e"],
      ["timescale", "0010_job_ticks.sql", "9035fce7d6a87c8e79e0909bd2c01d051e904e7f5ac9e7678e28452e3a7cb5b3"],
    ];
    for (const [engine, name, checksum] of released) {
      const files = await loadMigrations(engine as "postgres" | "timescale");
      expect(files.find((f) => f.name === name)?.checksum, `${engine} ${name}`).toBe(checksum);
    }
  });

  it("when a file includes shared DDL, then the include is expanded in place", async () => {
    const [postgres, timescale] = await Promise.all([loadMigrations("postgres"), loadMigrations("timescale")]);
    for (const files of [postgres, timescale]) {
      const events = files.find((f) => f.name.startsWith("0002_events"));
      expect(events?.sql).toContain("CREATE TABLE event_keys (");
      expect(events?.sql).not.toContain("tally:include");
    }
  });
});
