// Calls to Tally's public API with the tab's key (or portal token) as a Bearer header — never in a URL or cookie.
// Every number the pages show comes from these answers, as the API's decimal strings.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(detail);
  }
}

export interface Api {
  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T>;
  /** The answer's body as a Blob (CSV export). */
  blob(path: string, query?: Record<string, string | undefined>): Promise<Blob>;
}

export function createApi(key: string, onUnauthorized: (e: ApiError) => void): Api {
  const call = async (path: string, query: Record<string, string | undefined> = {}) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    const qs = params.toString();
    const res = await fetch(`${path}${qs ? `?${qs}` : ""}`, {
      headers: { Authorization: `Bearer ${key}` },
      credentials: "omit",
      cache: "no-store",
    });
    if (!res.ok) {
      let problem: { code?: string; detail?: string } = {};
      try {
        problem = (await res.json()) as typeof problem;
      } catch {
        // not problem+json: keep the status line
      }
      const err = new ApiError(res.status, problem.code, problem.detail ?? `${res.status} ${res.statusText}`);
      if (res.status === 401) onUnauthorized(err);
      throw err;
    }
    return res;
  };
  return {
    async get<T>(path: string, query?: Record<string, string | undefined>) {
      return (await (await call(path, query)).json()) as T;
    },
    async blob(path, query) {
      return (await call(path, query)).blob();
    },
  };
}

/** undefined when the answer is 404 (an endpoint this Tally does not have yet, e.g. credits) or 403. */
export async function optional<T>(p: Promise<T>, statuses = [404]): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof ApiError && statuses.includes(e.status)) return undefined;
    throw e;
  }
}
