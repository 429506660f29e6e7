// Running a job now (scope admin): POST /v1/jobs/{name}/run answers with what the run did.
import { z } from "zod";
import { AppError, notFound } from "../../errors.js";
import type { AppContext } from "../context.js";
import type { RouteTable } from "../routeTable.js";

export function jobRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/jobs/{name}/run",
    summary: "Run a job now and return its summary (waits up to 30 s if another process is running it)",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ name: z.string().min(1).max(64) }),
    responses: {
      200: {
        description: "the run's outcome and summary",
        schema: z.object({ job: z.string(), ran: z.boolean() }).loose(),
      },
      404: { description: "no such job" },
      409: { description: "another process kept the job busy" },
    },
    handle: async ({ params }) => {
      if (!ctx.jobs.names().includes(params.name)) {
        throw notFound(`no job named ${params.name}; jobs: ${ctx.jobs.names().join(", ")}`);
      }
      const outcome = await ctx.jobs.runNow(params.name);
      if (!outcome.ran) throw new AppError(409, "job_busy", outcome.reason);
      if (!outcome.ok) throw new AppError(500, "job_failed", `the ${params.name} job failed: ${outcome.error}`);
      return { status: 200, body: outcome };
    },
  });
}
