// The Portico dashboard: a client of the public API, served by the edge
// and calling the ingress like any other client. Values from the API are
// rendered with textContent only, never parsed as HTML: product names and
// descriptions are user input.

const tokenKey = "portico.token";
const logLimit = 50;
const byId = (id) => document.getElementById(id);

// The signed-in user, or null. The token stays in this tab's
// sessionStorage and is dropped once it expires.
function currentSession() {
  const token = sessionStorage.getItem(tokenKey);
  if (!token) return null;
  const claims = tokenClaims(token);
  if (!claims || (claims.exp && claims.exp * 1000 <= Date.now())) {
    sessionStorage.removeItem(tokenKey);
    return null;
  }
  return { token, claims };
}

// tokenClaims reads a JWT's payload for display; the ingress, not this
// page, verifies the signature.
function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

function isAdmin(session) {
  return Array.isArray(session?.claims.roles) && session.claims.roles.includes("admin");
}

class APIError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

// describeProblem turns an RFC 9457 problem into one line, field errors
// included.
function describeProblem(status, problem) {
  if (!problem || typeof problem !== "object") return `HTTP ${status}`;
  let text = problem.title || `HTTP ${status}`;
  if (problem.detail) text += `: ${problem.detail}`;
  if (Array.isArray(problem.errors) && problem.errors.length > 0) {
    text += ` (${problem.errors.map((e) => `${e.field || e.pointer}: ${e.detail}`).join("; ")})`;
  }
  return text;
}

// api calls the ingress and records the call in the request log; it
// resolves to the decoded body, and with {withResponse: true} to
// {data, response}.
async function api(method, path, body, { headers: extra = {}, withResponse = false } = {}) {
  const headers = {
    Accept: "application/json, application/problem+json",
    // The browser keeps no copy (cache: "no-store"), so every call reaches
    // the ingress and the log shows what the edge cache did. In that mode
    // the browser would send "no-cache", forcing the edge to revalidate;
    // max-stale=0 instead accepts any fresh stored response, and only that.
    "Cache-Control": "max-stale=0",
  };
  const session = currentSession();
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  Object.assign(headers, extra);

  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    logRequest({ method, path, status: 0, elapsed: performance.now() - started, cache: "", detail: err.message });
    throw new APIError(0, { title: "The ingress cannot be reached", detail: err.message });
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  const elapsed = performance.now() - started;
  logRequest({
    method,
    path,
    status: response.status,
    elapsed,
    cache: response.headers.get("X-Cache") || "",
    detail: response.ok ? "" : describeProblem(response.status, data),
  });
  if (!response.ok) throw new APIError(response.status, data);
  return withResponse ? { data, response } : data;
}

function logRequest({ method, path, status, elapsed, cache, detail }) {
  const row = document.createElement("tr");
  const ok = status >= 200 && status < 400;
  row.append(
    cell(new Date().toLocaleTimeString()),
    cell(method),
    cell(path),
    cell(status === 0 ? "—" : String(status), `number ${ok ? "status-ok" : "status-error"}`),
    cell(elapsed.toFixed(0), "number"),
    cell(cache),
    cell(detail),
  );
  row.dataset.status = String(status);
  row.dataset.cache = cache;
  row.dataset.method = method;
  const body = byId("request-log").tBodies[0];
  body.prepend(row);
  while (body.rows.length > logLimit) body.deleteRow(-1);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function say(text, isError = false) {
  const message = byId("message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

// run performs an action for a form or button, reporting its failure.
async function run(action) {
  try {
    await action();
  } catch (err) {
    say(err.message, true);
  }
}

function showSession() {
  const session = currentSession();
  byId("whoami").textContent = session
    ? `Signed in as ${session.claims.username || session.claims.sub}${isAdmin(session) ? " (admin)" : ""}`
    : "Not signed in";
  byId("sign-out").hidden = !session;
}

// Products, a page at a time; "More" follows the cursor. Loads can
// overlap (a search while the list reloads after an addition): only the
// latest one started is rendered, whatever order the answers come in.
const productList = { query: "", cursor: "", latest: 0 };

// afterWrite reloads after this page changed a product. The edge cache is
// purged by the write's event, a moment after the write answered, so the
// writer's own next read asks the edge to revalidate with the service
// (no-cache) and shows its change at once: read-your-writes.
async function loadProducts(append, { afterWrite = false } = {}) {
  const params = new URLSearchParams({ limit: "20" });
  if (productList.query) params.set("name", productList.query);
  if (append && productList.cursor) params.set("cursor", productList.cursor);
  const load = ++productList.latest;
  const headers = afterWrite ? { "Cache-Control": "no-cache" } : {};
  const page = await api("GET", `/api/products/products?${params}`, undefined, { headers });
  if (load !== productList.latest) return;
  const body = byId("product-table").tBodies[0];
  if (!append) body.replaceChildren();
  const session = currentSession();
  const admin = isAdmin(session);
  for (const p of page.items) {
    const row = document.createElement("tr");
    row.dataset.id = String(p.id);
    const actions = document.createElement("td");
    if (session) actions.append(button("Edit", () => editProduct(row, p), "quiet"));
    if (admin) actions.append(button("Delete", () => deleteProduct(p), "quiet"));
    row.append(cell(p.name), cell(p.description), cell(String(p.price), "number"), cell(String(p.stock_quantity), "number"), actions);
    body.append(row);
  }
  productList.cursor = page.next_cursor || "";
  byId("products-more").hidden = !productList.cursor;
}

// editProduct turns a row into a form for price and stock. It reads the
// product first for its ETag and saves with If-Match, so a change someone
// made in between is refused (412) instead of overwritten.
async function editProduct(clicked, p) {
  const { data: current, response } = await api("GET", `/api/products/products/${encodeURIComponent(p.id)}`, undefined, { withResponse: true });
  // The list may have been drawn again meanwhile (a search): edit the
  // product's row as it is now, if it is still listed.
  const row = clicked.isConnected ? clicked : byId("product-table").querySelector(`tr[data-id="${CSS.escape(String(p.id))}"]`);
  if (!row) return;
  const etag = response.headers.get("ETag");
  const price = input("price", String(current.price));
  const stock = input("stock_quantity", String(current.stock_quantity));
  stock.type = "number";
  stock.min = "0";
  const save = button("Save", async () => {
    try {
      const updated = await api(
        "PUT",
        `/api/products/products/${encodeURIComponent(p.id)}`,
        { price: price.value, stock_quantity: Number.parseInt(stock.value, 10) },
        { headers: etag ? { "If-Match": etag } : {} },
      );
      say(`Saved ${updated.name}.`);
    } catch (err) {
      if (err.status !== 412) throw err;
      say(`${current.name} was changed by someone else since you opened it; the list shows the current version. ${err.message}`, true);
    }
    await loadProducts(false, { afterWrite: true });
  });
  const cancel = button("Cancel", () => loadProducts(false), "quiet");
  row.cells[2].replaceChildren(price);
  row.cells[3].replaceChildren(stock);
  row.cells[4].replaceChildren(save, cancel);
  row.classList.add("editing");
}

// button makes a button whose click runs action, reporting its failure.
function button(text, action, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (className) b.className = className;
  b.addEventListener("click", () => run(action));
  return b;
}

function input(name, value) {
  const field = document.createElement("input");
  field.name = name;
  field.value = value;
  field.size = 8;
  return field;
}

async function deleteProduct(p) {
  await api("DELETE", `/api/products/products/${encodeURIComponent(p.id)}`);
  say(`Deleted ${p.name}.`);
  await loadProducts(false, { afterWrite: true });
}

// Users, a page at a time, the latest load rendered as for products.
const userList = { cursor: "", latest: 0 };

async function loadUsers(append) {
  const params = new URLSearchParams({ limit: "20" });
  if (append && userList.cursor) params.set("cursor", userList.cursor);
  const load = ++userList.latest;
  const page = await api("GET", `/api/users/users?${params}`);
  if (load !== userList.latest) return;
  const body = byId("user-table").tBodies[0];
  if (!append) body.replaceChildren();
  for (const u of page.items) {
    const row = document.createElement("tr");
    row.append(cell(u.username), cell(u.email), cell((u.roles || []).join(", ")), cell(u.is_active ? "yes" : "no"));
    body.append(row);
  }
  userList.cursor = page.next_cursor || "";
  byId("users-more").hidden = !userList.cursor;
}

function wire() {
  byId("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    run(async () => {
      const { email, password } = formValues(form);
      const reply = await api("POST", "/api/users/login", { email, password });
      sessionStorage.setItem(tokenKey, reply.access_token);
      form.reset();
      showSession();
      say("Signed in.");
      await loadProducts(false);
    });
  });
  byId("register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    run(async () => {
      const user = await api("POST", "/api/users/users", formValues(form));
      form.reset();
      say(`Registered ${user.username}: sign in with ${user.email}.`);
    });
  });
  byId("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(tokenKey);
    showSession();
    byId("product-table").tBodies[0].replaceChildren();
    byId("user-table").tBodies[0].replaceChildren();
    say("Signed out.");
  });
  byId("product-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    productList.query = formValues(event.currentTarget).name.trim();
    run(() => loadProducts(false));
  });
  byId("products-more").addEventListener("click", () => run(() => loadProducts(true)));
  byId("product-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    run(async () => {
      const values = formValues(form);
      const created = await api("POST", "/api/products/products", {
        name: values.name,
        description: values.description,
        // A string keeps the decimal exact; the service accepts both.
        price: values.price,
        stock_quantity: Number.parseInt(values.stock_quantity, 10),
      });
      form.reset();
      say(`Added ${created.name}.`);
      await loadProducts(false, { afterWrite: true });
    });
  });
  byId("users-load").addEventListener("click", () => run(() => loadUsers(false)));
  byId("users-more").addEventListener("click", () => run(() => loadUsers(true)));

  showSession();
  if (currentSession()) run(() => loadProducts(false));
}

wire();
