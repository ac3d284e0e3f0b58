// Try-it on an API's docs page: the browser calls the gateway's API itself
// (same origin: /v1/..., /apis/..., /services/...) with the key secret the
// developer pastes, or the one kept for this tab (sessionStorage, set by the
// page that shows a new key's secret). The secret is never sent to the portal:
// the form's fields have no names, so even without this script nothing of
// them is submitted. Shown: status, latency (measured here, until the whole
// answer is read), cost (the gateway's x-sluice-cost-pico-usd header, a prompt
// API's cost in its answer, or a service's price per call) and the answer.
"use strict";
(function () {
  const form = document.getElementById("try-it");
  if (!form) return;
  const KEPT = "sluice.portal.key";
  const MAX_SHOWN = 200000;
  const $ = (id) => document.getElementById(id);
  const key = $("try-key");
  try {
    const kept = window.sessionStorage.getItem(KEPT);
    if (kept && !key.value) {
      key.value = kept;
      $("try-key-kept").hidden = false;
    }
  } catch (_) {
    // No storage for this page (a private window's policy): the developer pastes the key.
  }

  const usd = (pico) => {
    // Integer pico-USD to dollars without float rounding surprises for small sums.
    const p = BigInt(pico);
    const whole = p / 1000000000000n;
    const frac = (p % 1000000000000n).toString().padStart(12, "0").replace(/0+$/, "");
    return "$" + whole.toString() + "." + (frac.length < 2 ? frac.padEnd(2, "0") : frac);
  };

  function request() {
    const mode = form.dataset.mode;
    let method = form.dataset.method || "POST";
    let path = form.dataset.path;
    let body = null;
    if (mode === "chat") {
      body = JSON.stringify({ model: form.dataset.model, messages: [{ role: "user", content: $("try-message").value }] });
    } else if (mode === "embeddings") {
      body = JSON.stringify({ model: form.dataset.model, input: $("try-message").value });
    } else if (mode === "prompt") {
      const text = $("try-body").value.trim() || "{}";
      JSON.parse(text); // a typo is said here, not by a 400 from the gateway
      body = text;
    } else if (mode === "service") {
      method = $("try-method").value;
      const base = form.dataset.basePath;
      const url = new URL(base + $("try-path").value.replace(/^\/+/, ""), window.location.origin);
      // Only the service's own paths of this origin: "../" is resolved before this check.
      if (url.origin !== window.location.origin || !url.pathname.startsWith(base)) {
        throw new Error("The path must stay under " + base);
      }
      path = url.pathname + url.search;
      if (["POST", "PUT", "PATCH"].includes(method)) {
        const text = $("try-body").value.trim();
        if (text) {
          JSON.parse(text);
          body = text;
        }
      }
    }
    return { method, path, body };
  }

  function cost(response, parsed) {
    const header = response.headers.get("x-sluice-cost-pico-usd");
    if (header && /^[0-9]{1,30}$/.test(header)) return usd(header);
    if (parsed && typeof parsed === "object" && parsed.cost && typeof parsed.cost.pico_usd === "number") {
      return usd(parsed.cost.pico_usd);
    }
    const price = form.dataset.price;
    if (form.dataset.mode === "service" && price && price !== "0" && response.ok) {
      return usd(price) + " (the service's price per call)";
    }
    return "—";
  }

  function show(status, statusClass, latency, costText, requestId, answer) {
    $("try-result").hidden = false;
    const statusCell = $("try-status");
    statusCell.textContent = status;
    statusCell.className = statusClass;
    $("try-latency").textContent = latency;
    $("try-cost").textContent = costText;
    $("try-request-id").textContent = requestId || "—";
    $("try-answer").textContent = answer.length > MAX_SHOWN ? answer.slice(0, MAX_SHOWN) + "\n… (cut)" : answer;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const progress = $("try-progress");
    const secret = key.value.trim();
    if (!secret) {
      progress.textContent = "Enter an API key secret first.";
      key.focus();
      return;
    }
    let call;
    try {
      call = request();
    } catch (error) {
      progress.textContent = error instanceof SyntaxError ? "The body is not valid JSON: " + error.message : error.message;
      return;
    }
    const headers = { Authorization: "Bearer " + secret };
    if (call.body !== null) headers["Content-Type"] = "application/json";
    const send = $("try-send");
    send.disabled = true;
    progress.textContent = "Sending…";
    const started = performance.now();
    try {
      const response = await fetch(call.path, {
        method: call.method,
        headers,
        body: call.body,
        credentials: "omit", // the API takes the key; the portal's cookie stays out of it
        cache: "no-store",
        redirect: "manual",
      });
      const text = await response.text();
      const latency = Math.round(performance.now() - started) + " ms";
      let parsed = null;
      let answer = text;
      if ((response.headers.get("content-type") || "").includes("json")) {
        try {
          parsed = JSON.parse(text);
          answer = JSON.stringify(parsed, null, 2);
        } catch (_) {
          // Shown as it came.
        }
      }
      const label = response.status + " " + (response.statusText || "");
      show(label.trim(), response.ok ? "status-ok" : "status-bad", latency, cost(response, parsed),
        response.headers.get("x-request-id"), answer);
      progress.textContent = "Done.";
    } catch (error) {
      const latency = Math.round(performance.now() - started) + " ms";
      show("no answer", "status-bad", latency, "—", "", String(error));
      progress.textContent = "The call failed.";
    } finally {
      send.disabled = false;
    }
  });
})();
