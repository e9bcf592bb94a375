// The console's only API: POST /graphql with the pasted bearer token.

const TOKEN_KEY = "p2c.console.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A GraphQL error with the server's ``extensions.code`` (FORBIDDEN, VALIDATION_FAILED, ...). */
export class GraphError extends Error {
  constructor(errors, status) {
    const first = errors[0] || {};
    const ext = first.extensions || {};
    super(first.message || "the gateway refused the request");
    this.code = ext.code || `HTTP_${status}`;
    this.correlationId = ext.correlationId || null;
    this.problems = ext.problems || [];
    this.status = status;
    this.errors = errors;
  }
}

export function newId(prefix) {
  const random =
    globalThis.crypto && crypto.randomUUID
      ? crypto.randomUUID().replaceAll("-", "")
      : Array.from({ length: 4 }, () => Math.random().toString(16).slice(2, 10)).join("");
  return `${prefix}-${random.slice(0, 24)}`;
}

/**
 * Run one operation. Resolves with ``data``; rejects with a ``GraphError`` when the request is refused or
 * any error came back (``partial: true`` resolves with ``{data, errors}`` instead when data came too).
 * ``correlationId`` is sent as ``X-Correlation-Id``, so the audit entries of an action can be found.
 */
export async function gql(query, variables = {}, { correlationId = null, partial = false } = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (correlationId) headers["X-Correlation-Id"] = correlationId;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (exc) {
    throw new GraphError([{ message: `the gateway is unreachable (${exc.message})`, extensions: { code: "UNREACHABLE" } }], 0);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GraphError([{ message: `HTTP ${response.status} without a JSON body` }], response.status);
  }
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("p2c:unauthenticated", { detail: body }));
  }
  const errors = body.errors || [];
  if (errors.length && !(partial && body.data)) throw new GraphError(errors, response.status);
  return partial ? { data: body.data, errors } : body.data;
}
