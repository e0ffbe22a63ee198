// The API client: one function per call, errors as values the pages show.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(op, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    q.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const res = await fetch(`/api/v1/${op}?${q}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (res.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new ApiError(401, "unauthorized", "log in first");
  }
  let body;
  try {
    body = await res.json();
  } catch (e) {
    throw new ApiError(res.status, "bad_reply", `HTTP ${res.status}`);
  }
  if (!body.ok) throw new ApiError(res.status, body.error.code, body.error.message);
  return body.result;
}

// Run fn now and every `ms` while the page is open; a failing call shows once, the polling goes on.
export function poll(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      await fn();
    } catch (e) {
      console.warn(e);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
