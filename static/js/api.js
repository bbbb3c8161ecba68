// REST calls of the pages: the session cookie authenticates, the X-CSRFToken header satisfies CSRF.
// Every refusal becomes an ApiError carrying the contract's {code, detail, fields}.

export class ApiError extends Error {
  constructor(status, code, detail, fields) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.fields = fields || null;
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network_error", String(error && error.message ? error.message : error));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = data && typeof data.code === "string" ? data.code : `http_${response.status}`;
    const detail = data && typeof data.detail === "string" ? data.detail : response.statusText;
    throw new ApiError(response.status, code, detail, data && data.fields);
  }
  return data;
}

// Data the server rendered into <script type="application/json"> by json_script.
export function readJson(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : {};
}

// "{name} is typing…" with {name: "kim"}: the translated templates come from the page.
export function format(template, values) {
  return String(template).replace(/\{(\w+)\}/g, (match, key) => (key in values ? String(values[key]) : match));
}

export function showError(element, text) {
  element.textContent = text;
  element.hidden = false;
}
